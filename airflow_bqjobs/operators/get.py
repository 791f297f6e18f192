"""Show one BigQuery job, like ``bq show -j``: read it and push what BigQuery says, without waiting."""

from __future__ import annotations

from typing import Any, Sequence

from airflow_bqjobs._compat import AirflowException, BaseOperator, Context
from airflow_bqjobs.core.arguments import validate_flag
from airflow_bqjobs.core.backoff import validate_interval
from airflow_bqjobs.core.decision import job_state
from airflow_bqjobs.core.job_listing import summarize_list_entry
from airflow_bqjobs.core.job_ref import JobRef, ref_of_job, validate_location, validate_project_id
from airflow_bqjobs.core.job_refs import parse_one_job_ref
from airflow_bqjobs.core.progress import ProgressReporter
from airflow_bqjobs.operators._arguments import LabelValueFilter, check_arguments
from airflow_bqjobs.operators._waiting import SUMMARY_XCOM_KEY


def _one_job(value: Any) -> JobRef:
    return parse_one_job_ref(value, purpose="this operator shows one (map it with .expand())")


class BigQueryGetJobOperator(LabelValueFilter, BaseOperator):
    """Read one job (``jobs.get``) in whatever state it is, and return its summary; never waits.

    The summary (also pushed under the XCom key ``job_summary``) is the list operator's: ``job_id``,
    ``project_id``, ``location``, ``job_type``, ``state``, ``error_result``, ``errors``, ``labels``,
    scalar ``statistics``, ``user_email``, ``parent_job_id``. With ``full_resource=True`` the task
    returns BigQuery's whole job resource instead (configuration, query plan...: it can be large).
    A job that does not exist fails the task, naming it, unless ``missing_ok=True`` (then the task
    returns ``None``). A failed job does not fail the task: reading it is what was asked.

    :param job_id: ``job_id``, ``LOCATION.job_id``, ``project:LOCATION.job_id``, a jobReference dict,
        or a submit task's output (``submit.output``). Templated.
    :param full_resource: return the whole job resource rather than the summary.
    :param missing_ok: a missing job is ``None`` rather than an error.
    :param project_id: project of a job given without one (default: the connection's). Templated.
    :param location: location of a job given without one (default: the connection's). Templated.
    """

    template_fields: Sequence[str] = ("job_id", "project_id", "location")
    ui_color = "#e8eef8"

    def __init__(
        self,
        *,
        job_id: Any,
        gcp_conn_id: str = "google_cloud_default",
        project_id: str | None = None,
        location: str | None = None,
        full_resource: bool = False,
        missing_ok: bool = False,
        request_timeout: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job_id = job_id
        self.gcp_conn_id = gcp_conn_id
        self.project_id = project_id
        self.location = location
        self.full_resource = validate_flag(full_resource, "full_resource")
        self.missing_ok = validate_flag(missing_ok, "missing_ok")
        self.request_timeout = validate_interval(request_timeout, "request_timeout")
        check_arguments(self, job_id=_one_job, project_id=validate_project_id, location=validate_location)

    def execute(self, context: Context) -> dict | None:
        from airflow_bqjobs.hooks.jobs import BigQueryJobsHook

        ref = parse_one_job_ref(
            self.job_id, project_id=self.project_id, location=self.location,
            purpose="this operator shows one (map it with .expand())",
        )
        hook = BigQueryJobsHook(
            self.gcp_conn_id, project_id=self.project_id, location=self.location, request_timeout=self.request_timeout
        )
        ref = hook.resolve(ref)
        job = hook.get_job(ref)
        if job is None:
            message = f"No such job: {ref} (wrong ID, project or location, or its metadata was deleted?)"
            if not self.missing_ok:
                raise AirflowException(f"{message}. Pass missing_ok=True to return None instead.")
            self.log.info("%s; missing_ok=True: returning None.", message)
            return None
        ref = ref_of_job(job, ref)
        summary = summarize_list_entry(job)
        context["ti"].xcom_push(key=SUMMARY_XCOM_KEY, value=summary)
        self.log.info(ProgressReporter(str(ref)).update(job))
        if job_state(job) == "DONE" and summary["error_result"]:
            err = summary["error_result"]
            self.log.info("Job %s ended with an error: [%s] %s", ref, err.get("reason"), err.get("message"))
        return dict(job) if self.full_resource else summary
