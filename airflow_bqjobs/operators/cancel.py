"""Cancel BigQuery jobs, like ``bq cancel`` (wait until DONE) or ``bq --nosync cancel`` (return at once)."""

from __future__ import annotations

from typing import Any

from airflow_bqjobs._compat import AirflowException, Context
from airflow_bqjobs.core import job_outcomes as outcomes
from airflow_bqjobs.core.arguments import validate_flag
from airflow_bqjobs.core.decision import job_state
from airflow_bqjobs.core.job_ref import JobRef
from airflow_bqjobs.core.job_refs import parse_job_refs
from airflow_bqjobs.links import BigQueryConsoleLink
from airflow_bqjobs.operators._arguments import check_arguments
from airflow_bqjobs.operators._job_set import JobSetOperator, Targets


class BigQueryCancelJobOperator(JobSetOperator):
    """Request ``jobs.cancel`` for PENDING or RUNNING jobs and, by default, wait until they are DONE.

    A cancel request is only a request: a job may still finish first. The returned XCom holds one
    entry per job, ``{"job": <jobReference>, "outcome", "state", "error_result"}``, with ``outcome``
    one of ``cancelled`` (ended with errorResult reason ``stopped``), ``succeeded`` or ``failed``
    (finished before the cancel took effect; ``error_result`` says why it failed),
    ``cancel_pending`` (``wait=False``: requested, not DONE yet) or ``not_found``
    (``missing_ok=True``). A job already DONE is left alone: no request is sent, and the log says so.
    The task fails if a job does not exist (after requesting the other cancels), never because a
    job finished before it could be cancelled.

    :param job_id: ``job_id``, ``LOCATION.job_id``, ``project:job_id`` (as ``bq ls -j`` prints it), ``project:LOCATION.job_id``, the reference dict
        the submit operator returns (``submit.output``), or a list of these (e.g. the output of a
        mapped submit task). Templated.
    :param wait: wait until every job is DONE (default, like ``bq cancel``); ``False`` returns right
        after the requests, like ``bq --nosync cancel``.
    :param missing_ok: a job that does not exist is reported as ``not_found`` instead of failing.
    :param deferrable: wait in the triggerer, one job at a time (default: ``[operators] default_deferrable``).
    :param poll_interval: longest pause between status checks, in seconds (checks start at 1 s).
    """

    ui_color = "#f6e0e0"
    # The job's console page when the task names one job (a list of jobs has no single page).
    operator_extra_links = (BigQueryConsoleLink(),)

    def __init__(self, *, job_id: Any, wait: bool = True, missing_ok: bool = False, **kwargs: Any) -> None:
        super().__init__(job_id=job_id, **kwargs)
        self.wait = validate_flag(wait, "wait")
        self.missing_ok = validate_flag(missing_ok, "missing_ok")
        check_arguments(self, job_id=parse_job_refs)

    def execute(self, context: Context) -> list[dict]:
        hook = self.make_hook(context)
        found = self.read_targets(context, hook)
        requested = sum(1 for _, job in found if job is not None and job_state(job) != "DONE")
        targets = [(ref, self._cancel(hook, ref, job)) for ref, job in found]
        self._check_missing(targets, requested=requested)
        return self.follow(context, hook, targets)

    def _cancel(self, hook, ref: JobRef, job: dict | None) -> dict | None:
        """Request cancellation of an unfinished job; returns the job as BigQuery then reports it."""
        if job is None:
            return None
        if job_state(job) == "DONE":
            self.log.info("Job %s is already DONE (%s): nothing to cancel.", ref, outcomes.final_outcome(job))
            return job
        from google.api_core.exceptions import NotFound

        try:
            job = hook.cancel_job(ref)
        except NotFound:  # deleted since we read it
            return None
        if job_state(job) != "DONE":
            self.log.info("Cancellation of job %s requested: cancellation pending (job %s).", ref, job_state(job))
        return job

    def _check_missing(self, targets: Targets, requested: int | None = None) -> None:
        """Fail on missing jobs (unless ``missing_ok``), saying what was done about the others.

        ``requested``: how many cancel requests this try sent (``None``: not this pass's business).
        """
        missing = [str(ref) for ref, job in targets if job is None]
        if missing and not self.missing_ok:
            others = ""
            if requested:
                others = f" Cancellation was requested for the other {requested} unfinished job(s)."
            elif requested == 0 and len(missing) < len(targets):
                others = " The other job(s) were already DONE: nothing was cancelled."
            raise AirflowException(
                f"No such job: {', '.join(missing)} (wrong ID, project or location, or its metadata was"
                f" deleted).{others} Pass missing_ok=True to report missing jobs as not_found."
            )

    def read_targets(self, context: Context, hook) -> Targets:
        return self.read_jobs(hook, self.job_refs(hook))

    def waits(self) -> bool:
        return self.wait

    def settled(self, context: Context, hook, targets: Targets) -> list[dict]:
        self._check_missing(targets)
        results = [outcomes.cancel_entry(ref, job) for ref, job in targets]
        for ref, entry in zip((r for r, _ in targets), results):
            err = entry["error_result"]
            why = f": [{err.get('reason')}] {err.get('message')}" if err and entry["outcome"] == outcomes.FAILED else ""
            self.log.info("Job %s: %s%s", ref, entry["outcome"], why)
        return results
