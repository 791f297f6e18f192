"""Wait for a BigQuery job this DAG did not start (another team's, a ``bq`` job) to be DONE.

The sensor only reads the job: it never cancels it, not on kill, not on timeout. In deferrable mode
the wait runs in :class:`BigQueryJobTrigger` with ``cancel_on_kill=False`` and the sensor's timeout
as the trigger's deadline.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from typing import Any, Sequence

from airflow_bqjobs._compat import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    Context,
    PokeReturnValue,
    default_deferrable,
)
from airflow_bqjobs.core.arguments import validate_flag, validate_optional_flag
from airflow_bqjobs.core.backoff import validate_interval
from airflow_bqjobs.core.decision import error_result, job_state
from airflow_bqjobs.core.errors import JobFailed
from airflow_bqjobs.core.job_ref import JobRef, parse_job_ref, ref_of_job, validate_location, validate_project_id
from airflow_bqjobs.core.job_refs import parse_one_job_ref
from airflow_bqjobs.core.progress import ProgressReporter, final_line
from airflow_bqjobs.core.summary import summarize_job
from airflow_bqjobs.links import BigQueryConsoleLink, persist_console_link
from airflow_bqjobs.operators._arguments import LabelValueFilter, check_arguments
from airflow_bqjobs.operators._waiting import (
    SUMMARY_XCOM_KEY,
    check_impersonation_chain,
    defer_on_job,
    resumed_by_a_later_try,
    try_start,
)
from airflow_bqjobs.triggers import job as job_trigger


def parse_one_job(value: Any, project_id: Any = None, location: Any = None) -> JobRef:
    """``job_id`` naming exactly one job (the sensor waits for one)."""
    return parse_one_job_ref(
        value, project_id=project_id, location=location, purpose="a sensor waits for one (map it with .expand())"
    )


class BigQueryJobSensor(LabelValueFilter, BaseSensorOperator):
    """Succeed when the job is DONE without ``errorResult``; fail if it failed (unless ``fail_on_error=False``).

    Returns the job reference (``projectId``, ``location``, ``jobId``) and pushes the job summary
    under the XCom key ``job_summary``. ``timeout``, ``soft_fail`` (skip instead of failing, on a
    timeout or a failed job), ``mode`` and ``poke_interval`` behave as for any Airflow sensor. A job
    that does not exist fails the sensor at once, unless ``wait_for_existence=True``: then the sensor
    waits for it to appear (another team's job that starts later), up to its ``timeout``, in poke,
    reschedule and deferrable mode alike.

    :param job_id: ``job_id``, ``LOCATION.job_id``, ``project:job_id`` (as ``bq ls -j`` prints it), ``project:LOCATION.job_id`` or a jobReference dict. Templated.
    :param fail_on_error: fail when the job ends with an ``errorResult`` (including a cancelled job).
    :param wait_for_existence: a job that does not exist (yet) is waited for instead of failing the sensor.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param poke_interval: seconds between checks; in deferrable mode the longest pause (checks start at 1 s).
    :param impersonation_chain: a service account to impersonate, or a delegation chain ending with it.
    """

    template_fields: Sequence[str] = ("job_id", "project_id", "location", "impersonation_chain")
    ui_color = "#f0eee4"
    operator_extra_links = (BigQueryConsoleLink(),)

    def __init__(
        self,
        *,
        job_id: Any,
        gcp_conn_id: str = "google_cloud_default",
        project_id: str | None = None,
        location: str | None = None,
        fail_on_error: bool = True,
        wait_for_existence: bool = False,
        deferrable: bool | None = None,
        poke_interval: float = 10.0,
        request_timeout: float = 60.0,
        impersonation_chain: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.job_id = job_id
        self.gcp_conn_id = gcp_conn_id
        self.impersonation_chain = impersonation_chain
        check_impersonation_chain(impersonation_chain)
        self.project_id = project_id
        self.location = location
        self.fail_on_error = validate_flag(fail_on_error, "fail_on_error")
        self.wait_for_existence = validate_flag(wait_for_existence, "wait_for_existence")
        validate_optional_flag(deferrable, "deferrable")
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.request_timeout = validate_interval(request_timeout, "request_timeout")
        check_arguments(self, job_id=parse_one_job, project_id=validate_project_id, location=validate_location)

    @cached_property
    def hook(self):
        """One hook (one HTTP client) for every poke of this try."""
        from airflow_bqjobs.hooks.jobs import BigQueryJobsHook

        return BigQueryJobsHook(
            self.gcp_conn_id,
            project_id=self.project_id,
            location=self.location,
            request_timeout=self.request_timeout,
            impersonation_chain=self.impersonation_chain,
        )

    def job_ref(self, hook) -> JobRef:
        return hook.resolve(parse_one_job(self.job_id, self.project_id, self.location))

    def _read(self, context: Context, hook, ref: JobRef, *, missing_ok: bool = False) -> dict | None:
        job = hook.get_job(ref)
        if job is None and not missing_ok:
            hint = "" if self.wait_for_existence else "; pass wait_for_existence=True to wait for it to appear"
            raise AirflowException(f"Job {ref} does not exist (wrong ID, project or location?){hint}")
        if job is not None and not getattr(self, "_link_persisted", False):  # once per try (poke mode pokes often)
            persist_console_link(context, job)
            self._link_persisted = True
        return job

    def _progress(self, ref: JobRef) -> ProgressReporter:
        """One reporter per try (poke mode keeps the sensor between pokes; reschedule starts afresh)."""
        if getattr(self, "_reporter", None) is None:
            self._reporter = ProgressReporter(str(ref))
        return self._reporter

    def _not_there_yet(self, ref: JobRef) -> None:
        self.log.info("Job %s does not exist yet; waiting for it to appear (up to the sensor's timeout of %g s).",
                      ref, self.timeout)

    # -- poke / reschedule mode ------------------------------------------------------------------

    def poke(self, context: Context) -> bool | PokeReturnValue:
        hook = self.hook
        ref = self.job_ref(hook)
        job = self._read(context, hook, ref, missing_ok=self.wait_for_existence)
        if job is None:
            self._not_there_yet(ref)
            return False
        ref = ref_of_job(job, ref)
        if job_state(job) != "DONE":
            if line := self._progress(ref).update(job):
                self.log.info(line)
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._finish(context, ref, job))

    # -- deferrable mode -------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        hook = self.hook
        ref = self.job_ref(hook)
        job = self._read(context, hook, ref, missing_ok=self.wait_for_existence)
        deadline = try_start(context) + timedelta(seconds=self.timeout)
        if job is None:
            self._not_there_yet(ref)
        else:
            ref = ref_of_job(job, ref)
            if job_state(job) == "DONE":
                return self._finish(context, ref, job)
            self.log.info("Job %s is %s; waiting in the triggerer until %s.", ref, job_state(job), deadline.isoformat())
        # cancel_on_kill=False: a sensor never cancels someone else's job
        defer_on_job(
            self,
            ref,
            context=context,
            poll_interval=self.poke_interval,
            deadline=deadline,
            cancel_on_kill=False,
            not_found_ok=self.wait_for_existence,
        )

    def execute_complete(self, context: Context, event: dict) -> Any:
        if resumed_by_a_later_try(self, context, event):
            return self.execute(context)
        ref = job_trigger.job_ref_of(event)
        status = event.get("status")
        if status == job_trigger.TIMEOUT:
            self._give_up(AirflowSensorTimeout(f"{event.get('message')}: sensor timeout of {self.timeout:g} s reached"))
        if status == job_trigger.ERROR:
            raise AirflowException(event.get("message") or f"Waiting for job {ref} failed")
        hook = self.hook
        job = self._read(context, hook, ref)
        ref = ref_of_job(job, ref)
        if job_state(job) != "DONE":  # cannot happen with BigQuery: the event said DONE
            raise AirflowException(f"Job {ref} is {job_state(job)} although its trigger reported it DONE")
        return self._finish(context, ref, job)

    # -- both ------------------------------------------------------------------------------------

    def _finish(self, context: Context, ref: JobRef, job: dict) -> dict:
        summary = summarize_job(job)
        context["ti"].xcom_push(key=SUMMARY_XCOM_KEY, value=summary)
        err = error_result(job)
        if err and self.fail_on_error:
            failed = JobFailed(ref.full_id, err)
            self._give_up(AirflowFailException(str(failed)), cause=failed)
        if err:
            self.log.warning("Job %s ended with an error (fail_on_error=False): %s", ref, err)
        else:
            self.log.info(final_line(str(ref), job))
        return parse_job_ref(job.get("jobReference") or ref.to_api()).to_api()

    def _give_up(self, exc: Exception, cause: Exception | None = None) -> None:
        """Fail with ``exc``, or skip under ``soft_fail`` / ``never_fail``, on every path and Airflow version."""
        if self.soft_fail or getattr(self, "never_fail", False):
            raise AirflowSkipException(f"{exc} (skipped: soft_fail)") from (cause or exc)
        raise exc from cause

