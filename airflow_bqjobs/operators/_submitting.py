"""What the operators that start a job share: finish its configuration, derive its ID, submit it once, wait.

The submit and re-run operators differ only in where the configuration comes from; from there on one
path: labels and server-side timeout added, the job ID derived from the run identity and the final
configuration, :func:`attach_or_run` to insert at most one job (an upload too: it is just another
``insert`` callable), then :meth:`JobWaitingOperator.wait_for_job`.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any, Callable

from airflow_bqjobs._compat import Context
from airflow_bqjobs.context import is_tasks_test, run_created_not_before, run_identity, tries_this_cycle
from airflow_bqjobs.core.arguments import validate_flag
from airflow_bqjobs.core.attach import attach_or_run
from airflow_bqjobs.core.decision import Action, error_result
from airflow_bqjobs.core.errors import InvalidJobInput, JobFailed
from airflow_bqjobs.core.job_config import build_configuration
from airflow_bqjobs.core.job_id import derive_job_id, validate_prefix
from airflow_bqjobs.core.job_ref import JobRef, validate_job_id
from airflow_bqjobs.core.labels import airflow_labels, validate_labels
from airflow_bqjobs.links import BigQueryConsoleLink, persist_console_link
from airflow_bqjobs.operators._arguments import check_arguments
from airflow_bqjobs.operators._lineage import JobLineageMixin
from airflow_bqjobs.operators._waiting import JobWaitingOperator

_DESCRIBE = {
    Action.INSERT: "Inserted job %s.",
    Action.ATTACH: "Reattached to job %s, started by an earlier attempt; inserting nothing.",
    Action.SUCCEED: "Job %s already succeeded in an earlier attempt; using its result, inserting nothing.",
    Action.FAIL: "Job %s was cancelled and rerun_cancelled=False; not running it again.",
}


class JobSubmittingOperator(JobLineageMixin, JobWaitingOperator):
    """Base of the operators that start a job exactly once per task instance and wait for it.

    :param labels: extra job labels; ``airflow-dag``, ``airflow-task``, ``airflow-run`` are always added.
    :param job_id: a fixed job ID instead of the derived one (you then own its uniqueness).
    :param job_id_prefix: replaces the ``airflow`` prefix of derived IDs.
    :param reattach_on_clear: follow the same job even after the task or DAG run is cleared.
    :param rerun_cancelled: a retry re-runs a cancelled job (default); ``False`` fails the task instead.
    """

    operator_extra_links = (BigQueryConsoleLink(),)

    def __init__(
        self,
        *,
        labels: dict[str, str] | None = None,
        job_id: str | None = None,
        job_id_prefix: str | None = None,
        reattach_on_clear: bool = False,
        rerun_cancelled: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.labels = labels
        self.job_id = job_id
        self.job_id_prefix = job_id_prefix
        self.reattach_on_clear = reattach_on_clear
        self.rerun_cancelled = rerun_cancelled
        if job_id is not None and job_id_prefix is not None:
            raise InvalidJobInput("job_id", "job_id and job_id_prefix exclude each other: pass one of them, not both")
        validate_flag(reattach_on_clear, "reattach_on_clear")
        validate_flag(rerun_cancelled, "rerun_cancelled")
        check_arguments(
            self,
            job_id=lambda value: value is None or validate_job_id(value),
            job_id_prefix=validate_prefix,
            labels=validate_labels,
        )

    def check_options(self) -> None:
        """Check the rendered ID options and labels before any request (a re-run reads its source first)."""
        if self.job_id is not None:
            validate_job_id(self.job_id)
        else:
            validate_prefix(self.job_id_prefix)
        validate_labels(self.labels)

    def job_timeout_ms(self) -> int | None:
        """BigQuery's server-side ``jobTimeoutMs`` for this task, unless the configuration sets one.

        ``execution_timeout`` with ``cancel_on_kill=True``: the job may not outlive the try that timed
        out, so BigQuery stops it after that long too (a safety net for a worker that died before it
        could cancel). With ``cancel_on_kill=False`` the user lets the job outlive its try (a retry
        reattaches to it), so no limit is added. No ``execution_timeout``: none either.
        """
        timeout = self.execution_timeout
        if not timeout or not self.cancel_on_kill:
            return None
        return int(timeout.total_seconds() * 1000)

    def finish_job(
        self, context: Context, configuration: Any, *, id_input: Callable[[dict], Any] | None = None
    ) -> tuple[JobRef, dict]:
        """Validated configuration with labels and timeout, and the base job reference: no I/O.

        The derived ID hashes the run identity and the final configuration, or ``id_input(configuration)``
        when given (an upload adds its file's identity).
        """
        identity = run_identity(context, reattach_on_clear=self.reattach_on_clear)
        if is_tasks_test(context) and self.job_id is None:
            # `airflow tasks test` runs the task to see it work, recording nothing: a job of its own,
            # never the DAG run's (whose result it would otherwise "succeed" from without running).
            identity = dataclasses.replace(identity, rerun_key=f"tasks-test.{uuid.uuid4().hex}")
            self.log.warning(
                "airflow tasks test: running a new job under a test job ID; the DAG run's own job, if any,"
                " is neither reused nor touched."
            )
        configuration = build_configuration(
            configuration,
            labels=validate_labels(self.labels),
            airflow_labels=airflow_labels(identity.dag_id, identity.task_id, identity.run_id, identity.map_index),
            job_timeout_ms=self.job_timeout_ms(),
        )
        if self.job_id is not None:
            job_id = validate_job_id(self.job_id)
        else:
            hashed = configuration if id_input is None else id_input(configuration)
            job_id = derive_job_id(identity, hashed, validate_prefix(self.job_id_prefix))
        return JobRef(job_id), configuration

    def on_job_done(self, context: Context, job: dict) -> Any:
        self.keep_for_lineage(job)  # before a failed job raises: the failure event names it too
        return super().on_job_done(context, job)

    def submit_and_wait(self, context: Context, hook, base: JobRef, insert_job: Callable[[JobRef], dict]) -> Any:
        """Insert (or upload) at most one job under ``base``'s ID generations, then wait for it."""
        outcome = attach_or_run(
            hook,
            base,
            insert_job,
            rerun_cancelled=self.rerun_cancelled,
            bound=tries_this_cycle(context, reattach_on_clear=self.reattach_on_clear) - 1,
            locate=lambda ref: hook.find_job_location(ref, not_before=run_created_not_before(context)),
            log=self.log.info,
        )
        ref = outcome.ref  # with the location BigQuery reports
        self.log.info(_DESCRIBE[outcome.action], ref)
        persist_console_link(context, outcome.job)  # before waiting: the link works while deferred
        if outcome.action is Action.FAIL:
            self.keep_for_lineage(outcome.job)
            raise JobFailed(ref.full_id, error_result(outcome.job) or {})
        return self.wait_for_job(context, hook, ref, outcome.job)

    # -- templating ------------------------------------------------------------------------------

    def render_template(self, content: Any, context: Context, jinja_env=None, seen_oids=None) -> Any:
        """As Airflow renders, except that a URI such as ``gs://bucket/data.json`` is never taken for a
        template file because of its extension: it is data (sourceUris, destinationUris)."""
        if isinstance(content, str) and "://" in content and content.endswith(tuple(self.template_ext)):
            return self.render_inline(content, context, jinja_env)
        return super().render_template(content, context, jinja_env, seen_oids)

    def render_inline(self, text: str, context: Context, jinja_env=None) -> Any:
        """Render ``text`` itself as a template (never as the name of a template file)."""
        jinja_env = jinja_env or self.get_template_env()
        return self._render(jinja_env.from_string(text), context)
