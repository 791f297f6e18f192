"""List BigQuery jobs, like ``bq ls -j``, into XCom as compact summaries."""

from __future__ import annotations

from typing import Any, Sequence

from airflow_bqjobs._compat import BaseOperator, Context
from airflow_bqjobs.core.arguments import validate_flag
from airflow_bqjobs.core.backoff import validate_interval
from airflow_bqjobs.core.job_listing import (
    AIRFLOW_FILTERS,
    DEFAULT_MAX_RESULTS,
    airflow_filter_value,
    build_list_query,
    parse_states,
    to_epoch_ms,
    validate_max_results,
)
from airflow_bqjobs.core.job_ref import parse_job_ref, validate_project_id
from airflow_bqjobs.core.labels import validate_labels
from airflow_bqjobs.operators._arguments import LabelValueFilter, check_arguments, literal
from airflow_bqjobs.operators._waiting import check_impersonation_chain


class BigQueryListJobsOperator(LabelValueFilter, BaseOperator):
    """List jobs of a project, newest first, and return a JSON-serialisable summary of each.

    Server-side filters (``jobs.list``): owner, state, creation time, parent job. The label filter
    is applied client-side (``jobs.list`` has none): pages are read until ``max_results`` jobs match,
    so give a creation-time bound when filtering by label in a busy project. Each summary holds
    ``job_id``, ``project_id``, ``location``, ``job_type``, ``state``, ``error_result``, ``errors``,
    ``labels``, scalar ``statistics`` (creation/start/end times, bytes), ``user_email`` and
    ``parent_job_id``. Other users' jobs may come back redacted without ``bigquery.jobs.listAll``.

    :param project_id: project whose jobs are listed (default: the connection's). Templated.
    :param all_users: every user's jobs (``bq ls -j -a``); default: only the connection's own.
    :param state_filter: ``"pending"``, ``"running"``, ``"done"``, a list of them, or ``"pending,running"``. Templated.
    :param min_creation_time: only jobs created at or after this: epoch milliseconds, an aware datetime
        or ISO-8601 text (e.g. ``"{{ data_interval_start }}"``). Templated.
    :param max_creation_time: only jobs created at or before this (same forms). Templated.
    :param max_results: at most this many jobs (default 50, like ``bq ls -j``); ``None``: no limit.
    :param parent_job_id: the child jobs of this script job (any job reference form). Templated.
    :param labels: only jobs carrying all these labels with exactly these values (client-side). Templated.
    :param airflow_dag_id: only the jobs the provider's operators ran for this DAG (its ``airflow-dag``
        label, the ID sanitised as it is written). Templated, e.g. ``"{{ dag.dag_id }}"``.
    :param airflow_run_id: only the jobs of this DAG run (``airflow-run``), e.g. ``"{{ run_id }}"``. Templated.
    :param airflow_task_id: only the jobs of this task (``airflow-task``). Templated.

    The ``airflow_*`` filters are label filters (client-side, give ``min_creation_time`` in a busy
    project); they combine with ``labels``, and a contradiction between the two is an error. They
    are not called ``dag_id`` / ``task_id``: those name the operator's own DAG and task in Airflow.
    """

    template_fields: Sequence[str] = (
        "project_id", "state_filter", "min_creation_time", "max_creation_time", "parent_job_id", "labels",
        "airflow_dag_id", "airflow_run_id", "airflow_task_id",
        "impersonation_chain",
    )
    ui_color = "#e8eef8"

    def __init__(
        self,
        *,
        gcp_conn_id: str = "google_cloud_default",
        project_id: str | None = None,
        all_users: bool = False,
        state_filter: str | Sequence[str] | None = None,
        min_creation_time: Any = None,
        max_creation_time: Any = None,
        max_results: int | None = DEFAULT_MAX_RESULTS,
        parent_job_id: Any = None,
        labels: dict[str, str] | None = None,
        airflow_dag_id: str | None = None,
        airflow_run_id: str | None = None,
        airflow_task_id: str | None = None,
        request_timeout: float = 60.0,
        impersonation_chain: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.gcp_conn_id = gcp_conn_id
        self.impersonation_chain = impersonation_chain
        check_impersonation_chain(impersonation_chain)
        self.project_id = project_id
        self.all_users = all_users
        self.state_filter = state_filter
        self.min_creation_time = min_creation_time
        self.max_creation_time = max_creation_time
        self.max_results = validate_max_results(max_results)
        self.parent_job_id = parent_job_id
        self.labels = labels
        self.airflow_dag_id = airflow_dag_id
        self.airflow_run_id = airflow_run_id
        self.airflow_task_id = airflow_task_id
        self.request_timeout = validate_interval(request_timeout, "request_timeout")
        validate_flag(all_users, "all_users")
        check_arguments(
            self,
            project_id=validate_project_id,
            state_filter=parse_states,
            min_creation_time=lambda value: to_epoch_ms(value, "min_creation_time"),
            max_creation_time=lambda value: to_epoch_ms(value, "max_creation_time"),
            parent_job_id=lambda value: value is None or parse_job_ref(value, field="parent_job_id"),
            labels=validate_labels,
            **{name: (lambda value, name=name: airflow_filter_value(value, name)) for name in AIRFLOW_FILTERS},
        )
        if all(literal(self, name) for name in self.template_fields):  # cross-field rules too
            self._query()

    def _query(self):
        return build_list_query(
            project_id=self.project_id,
            all_users=self.all_users,
            state_filter=self.state_filter,
            min_creation_time=self.min_creation_time,
            max_creation_time=self.max_creation_time,
            max_results=self.max_results,
            parent_job_id=self.parent_job_id,
            labels=self.labels,
            airflow_dag_id=self.airflow_dag_id,
            airflow_run_id=self.airflow_run_id,
            airflow_task_id=self.airflow_task_id,
        )

    def execute(self, context: Context) -> list[dict]:
        query = self._query()
        from airflow_bqjobs.hooks.jobs import BigQueryJobsHook

        hook = BigQueryJobsHook(self.gcp_conn_id, project_id=query.project_id, request_timeout=self.request_timeout,
                                impersonation_chain=self.impersonation_chain)
        summaries = query.select(hook.list_jobs(**query.list_kwargs()))
        self.log.info("Listed %d job(s) of project %s.", len(summaries), query.project_id or hook.project_id)
        return summaries
