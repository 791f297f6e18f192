"""Submit a BigQuery job exactly once per task instance, however often the task is retried."""

from __future__ import annotations

from typing import Any, Sequence

from airflow_bqjobs._compat import Context
from airflow_bqjobs.context import run_identity
from airflow_bqjobs.core.attach import attach_or_run
from airflow_bqjobs.core.decision import Action, error_result
from airflow_bqjobs.core.errors import JobFailed
from airflow_bqjobs.core.job_config import build_configuration, parse_configuration
from airflow_bqjobs.core.job_id import derive_job_id, validate_prefix
from airflow_bqjobs.core.job_ref import JobRef, validate_job_id
from airflow_bqjobs.core.labels import airflow_labels, validate_labels
from airflow_bqjobs.operators._waiting import JobWaitingOperator


class BigQuerySubmitJobOperator(JobWaitingOperator):
    """Run a query, load, copy or extract job given in BigQuery's REST ``configuration`` form.

    The job ID is derived from the DAG run context and the rendered configuration, so every retry of
    the task instance reattaches to the job its earlier attempt started: a PENDING/RUNNING job is
    awaited, a successful one is the result (nothing re-runs), a failed one is re-run once under the
    next generation of the ID. Clearing the task or its DAG run starts a new job unless
    ``reattach_on_clear=True``. Returns the job reference (``projectId``, ``location``, ``jobId``) and
    pushes a summary (state, statistics, errors) under the XCom key ``job_summary``.

    :param configuration: the job configuration (``{"query": {...}}``, ``{"load": {...}}``, ...), or a
        path to a ``.json`` file holding it; strings ending in ``.sql`` inside it are read as templates.
    :param labels: extra job labels; ``airflow-dag``, ``airflow-task``, ``airflow-run`` are always added.
    :param job_id: a fixed job ID instead of the derived one (you then own its uniqueness).
    :param job_id_prefix: replaces the ``airflow`` prefix of derived IDs.
    :param reattach_on_clear: follow the same job even after the task or DAG run is cleared.
    :param rerun_cancelled: a retry re-runs a cancelled job (default); ``False`` fails the task instead.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param poll_interval: longest pause between status checks, in seconds (checks start at 1 s).
    :param cancel_on_kill: cancel the job when the task is killed or times out.
    """

    template_fields: Sequence[str] = ("configuration", "project_id", "location", "labels", "job_id", "job_id_prefix")
    template_ext: Sequence[str] = (".json", ".sql")
    template_fields_renderers = {"configuration": "json"}
    ui_color = "#e4f0e8"

    def __init__(
        self,
        *,
        configuration: dict | str,
        labels: dict[str, str] | None = None,
        job_id: str | None = None,
        job_id_prefix: str | None = None,
        reattach_on_clear: bool = False,
        rerun_cancelled: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.configuration = configuration
        self.labels = labels
        self.job_id = job_id
        self.job_id_prefix = job_id_prefix
        self.reattach_on_clear = reattach_on_clear
        self.rerun_cancelled = rerun_cancelled
        if job_id is not None and job_id_prefix is not None:
            raise ValueError("job_id and job_id_prefix: pass one of them, not both")
        if isinstance(configuration, dict):  # templated values are checked again once rendered
            parse_configuration(configuration)

    def build_job(self, context: Context) -> tuple[JobRef, dict]:
        """The base job reference and the configuration to submit, all validated: no I/O."""
        identity = run_identity(context, reattach_on_clear=self.reattach_on_clear)
        timeout = self.execution_timeout
        configuration = build_configuration(
            self.configuration,
            labels=validate_labels(self.labels),
            airflow_labels=airflow_labels(identity.dag_id, identity.task_id, identity.run_id, identity.map_index),
            job_timeout_ms=int(timeout.total_seconds() * 1000) if timeout else None,
        )
        if self.job_id is not None:
            job_id = validate_job_id(self.job_id)
        else:
            job_id = derive_job_id(identity, configuration, validate_prefix(self.job_id_prefix))
        return JobRef(job_id), configuration

    def execute(self, context: Context) -> Any:
        base, configuration = self.build_job(context)
        hook = self.make_hook()
        base = hook.resolve(base)
        outcome = attach_or_run(
            hook,
            base,
            lambda ref: hook.insert_job(ref, configuration),
            rerun_cancelled=self.rerun_cancelled,
            log=self.log.info,
        )
        self.log.info(_DESCRIBE[outcome.action], outcome.ref)
        if outcome.action is Action.FAIL:
            raise JobFailed(outcome.ref.full_id, error_result(outcome.job) or {})
        return self.wait_for_job(context, hook, outcome.ref, outcome.job)


_DESCRIBE = {
    Action.INSERT: "Inserted job %s.",
    Action.ATTACH: "Reattached to job %s, started by an earlier attempt; inserting nothing.",
    Action.SUCCEED: "Job %s already succeeded in an earlier attempt; using its result, inserting nothing.",
    Action.FAIL: "Job %s was cancelled and rerun_cancelled=False; not running it again.",
}
