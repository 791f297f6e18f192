"""What every operator that waits for a job shares: sync polling or deferral, resume, finish, kill.

Sync mode polls ``jobs.get`` in the worker with a growing interval; deferrable mode hands the job to
:class:`BigQueryJobTrigger`. Either way the job is re-read before deciding success, so a result is
never taken from a stale event. Cancel-on-kill: sync ``on_kill`` cancels the job on
``execution_timeout``, and on a kill only when no newer try of the task instance follows the job
(:mod:`airflow_bqjobs.core.kill`: Airflow also SIGTERMs a zombie try whose task instance moved on to
a newer try, through the same ``on_kill``); in deferrable mode the trigger applies the same rule
(see :mod:`airflow_bqjobs.triggers.job` for how, per Airflow version). A job
inserted but not yet awaited when the task dies is bounded by its server-side ``jobTimeoutMs`` and
found again by the next attempt.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any, Sequence

from airflow_bqjobs._compat import (
    AirflowException,
    BaseOperator,
    Context,
    current_task_state_within,
    default_deferrable,
)
from airflow_bqjobs.core.arguments import validate_flag, validate_optional_flag
from airflow_bqjobs.core.attach import reread_until_visible
from airflow_bqjobs.core.backoff import poll_intervals, validate_interval
from airflow_bqjobs.core.credential_options import parse_impersonation_chain
from airflow_bqjobs.core.decision import error_result, job_state
from airflow_bqjobs.core.errors import JobFailed
from airflow_bqjobs.core.job_ref import JobRef, validate_location, validate_project_id
from airflow_bqjobs.core.kill import UNKNOWN, may_cancel, why
from airflow_bqjobs.core.progress import ProgressReporter, final_line
from airflow_bqjobs.core.summary import summarize_job
from airflow_bqjobs.operators._arguments import LabelValueFilter, check_arguments
from airflow_bqjobs.triggers import job as job_trigger

SUMMARY_XCOM_KEY = "job_summary"
# How long after our own deadline Airflow's trigger timeout fires: only if our trigger could not act.
_DEFER_TIMEOUT_GRACE = timedelta(minutes=2)
# How long on_kill may take to read the task instance's state: Airflow's supervisor escalates its
# SIGTERM to SIGKILL after 5 s, and the cancel must fit in too.
KILL_STATE_TIMEOUT = 2.0


class JobWaitingOperator(LabelValueFilter, BaseOperator):
    """Base of the operators that follow one BigQuery job to DONE."""

    def __init__(
        self,
        *,
        gcp_conn_id: str = "google_cloud_default",
        project_id: str | None = None,
        location: str | None = None,
        deferrable: bool | None = None,
        poll_interval: float = 10.0,
        cancel_on_kill: bool = True,
        request_timeout: float = 60.0,
        retry_deadline: float = 600.0,
        impersonation_chain: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.gcp_conn_id = gcp_conn_id
        self.impersonation_chain = impersonation_chain
        check_impersonation_chain(impersonation_chain)
        self.project_id = project_id
        self.location = location
        validate_optional_flag(deferrable, "deferrable")
        validate_flag(cancel_on_kill, "cancel_on_kill")
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.poll_interval = validate_interval(poll_interval, "poll_interval")
        self.request_timeout = validate_interval(request_timeout, "request_timeout")
        self.retry_deadline = validate_interval(retry_deadline, "retry_deadline")
        self.cancel_on_kill = cancel_on_kill
        self._waiting_on: JobRef | None = None
        self._polling = False  # inside the poll loop: an on_kill now comes from a SIGTERM, not a timeout
        self._this_try = None
        check_arguments(self, project_id=validate_project_id, location=validate_location)

    # -- hooks -----------------------------------------------------------------------------------

    def make_hook(self, context: Context | None = None):
        """The hook; with ``context``, transient retries also stop at this try's execution_timeout."""
        from airflow_bqjobs.hooks.jobs import BigQueryJobsHook

        return BigQueryJobsHook(
            self.gcp_conn_id,
            project_id=self.project_id,
            location=self.location,
            request_timeout=self.request_timeout,
            retry_deadline=self.retry_deadline,
            retry_until=self._deadline(context) if context is not None else None,
            impersonation_chain=self.impersonation_chain,
        )

    # -- waiting ---------------------------------------------------------------------------------

    def wait_for_job(self, context: Context, hook, ref: JobRef, job: dict) -> Any:
        """Follow ``job`` (under ``ref``) to DONE, here or in the triggerer, then :meth:`on_job_done`."""
        if job_state(job) == "DONE":
            return self.on_job_done(context, job)
        if self.deferrable:
            defer_on_job(
                self,
                ref,
                context=context,
                poll_interval=self.poll_interval,
                deadline=self._deadline(context),
                cancel_on_kill=self.cancel_on_kill,
                reattach_on_clear=getattr(self, "reattach_on_clear", False),
            )
        self._this_try = _try_of(context)
        return self.on_job_done(context, self._poll_until_done(hook, ref))

    def _poll_until_done(self, hook, ref: JobRef) -> dict:
        # Left set when an exception ends the wait: Airflow calls on_kill *after* its timeout
        # exception has unwound this frame, and on_kill must still know which job to cancel.
        self._waiting_on = ref
        self._polling = True
        progress = ProgressReporter(str(ref))
        try:
            for interval in poll_intervals(self.poll_interval):
                job = hook.get_job(ref) or reread_until_visible(hook, ref)
                if job is None:
                    raise AirflowException(f"Job {ref} disappeared while waiting (its metadata was deleted?)")
                if job_state(job) == "DONE":
                    self._waiting_on = None
                    return job
                if line := progress.update(job):
                    self.log.info("%s; next check in %.1f s", line, interval)
                time.sleep(interval)
        finally:
            self._polling = False
        raise AssertionError("unreachable")

    def execute_complete(self, context: Context, event: dict) -> Any:
        """Resume after the trigger fired: re-read the job, never trust the event alone."""
        if resumed_by_a_later_try(self, context, event):
            return self.execute(context)
        ref = job_trigger.job_ref_of(event)
        status = event.get("status")
        if status == job_trigger.TIMEOUT:
            raise AirflowException(f"{event.get('message')}. Task timed out.")
        if status == job_trigger.ERROR:
            raise AirflowException(event.get("message") or f"Waiting for job {ref} failed")
        hook = self.make_hook(context)
        job = hook.get_job(ref) or reread_until_visible(hook, ref)
        if job is None:
            raise AirflowException(f"Job {ref} finished but can no longer be read")
        if job_state(job) != "DONE":  # cannot happen with BigQuery; stay safe and wait again
            return self.wait_for_job(context, hook, ref, job)
        return self.on_job_done(context, job)

    def _deadline(self, context: Context) -> datetime | None:
        """When this try must end: start + execution_timeout, if the task has one."""
        if not self.execution_timeout:
            return None
        return try_start(context) + self.execution_timeout

    # -- finishing -------------------------------------------------------------------------------

    def on_job_done(self, context: Context, job: dict) -> Any:
        """Push the summary, warn on non-fatal errors, fail on ``errorResult``; return the reference."""
        summary = summarize_job(job)
        context["ti"].xcom_push(key=SUMMARY_XCOM_KEY, value=summary)
        ref = JobRef(summary["job_id"], summary["project_id"], summary["location"])
        err = error_result(job)
        for problem in summary["errors"]:
            if problem != err:
                self.log.warning("Job %s reported a non-fatal error: %s", ref, problem)
        self.log.info(final_line(str(ref), job))
        if err:
            raise JobFailed(ref.full_id, err)
        return ref.to_api()

    def on_kill(self) -> None:
        """Sync mode: cancel the job this worker waits on, unless a newer try of the task follows it.

        Called after Airflow's ``execution_timeout`` unwound the wait (always cancels), or from the
        task runner's SIGTERM handler while the wait runs: a user's kill, but also a zombie try whose
        task instance moved on, or lost heartbeats. Then the task instance's current state decides
        (:func:`airflow_bqjobs.core.kill.may_cancel`).
        """
        ref = self._waiting_on
        if ref is None or not self.cancel_on_kill:
            return
        reason = "task timed out"
        if self._polling and self._this_try is not None:
            this_try = self._this_try
            try:
                state = current_task_state_within(this_try, KILL_STATE_TIMEOUT)
            except Exception as exc:
                self.log.warning("Task killed and its state cannot be read (%s)", exc)
                state = UNKNOWN
            if not may_cancel(state, reattach_on_clear=getattr(self, "reattach_on_clear", False),
                              retry_left=this_try.retry_left):
                self.log.warning("Task killed (%s): job %s left running for the try that follows it", why(state), ref)
                return
            reason = why(state)
        try:
            job = self.make_hook().cancel_job(ref)
            self.log.info("Requested cancellation of job %s (%s); state %s", ref, reason, job_state(job))
        except Exception:
            self.log.exception("Could not cancel job %s; it may still be running", ref)


def _try_of(context: Context) -> SimpleNamespace:
    """Which task instance and try this is, as on_kill needs it (read before any signal arrives)."""
    ti = context["ti"]
    try_number = getattr(ti, "try_number", 1) or 1
    max_tries = getattr(ti, "max_tries", 0) or 0
    return SimpleNamespace(dag_id=ti.dag_id, task_id=ti.task_id, run_id=context["run_id"],
                           map_index=getattr(ti, "map_index", -1), retry_left=try_number <= max_tries)


def defer_on_job(
    task,
    ref: JobRef,
    *,
    context: Context | None = None,
    poll_interval: float,
    deadline: datetime | None,
    cancel_on_kill: bool,
    reattach_on_clear: bool = False,
    not_found_ok: bool = False,
):
    """Hand the wait for ``ref`` to :class:`BigQueryJobTrigger`; resume in ``task.execute_complete``.

    The one deferral used by every operator and the sensor: the trigger enforces ``deadline`` itself
    and Airflow's deferral timeout is only a backstop after it (see :func:`_defer_timeout`).
    ``task`` provides ``gcp_conn_id``, ``request_timeout`` and ``impersonation_chain``. ``not_found_ok``:
    the job may not exist yet (the sensor's ``wait_for_existence``); a 404 then means "keep waiting".
    ``context``: the trigger carries the deferring try's number and puts it in its events (see
    :func:`resumed_by_a_later_try`).
    """
    task.defer(
        trigger=job_trigger.BigQueryJobTrigger(
            job=ref.to_api(),
            gcp_conn_id=task.gcp_conn_id,
            poll_interval=poll_interval,
            deadline=deadline.timestamp() if deadline else None,
            cancel_on_kill=cancel_on_kill,
            request_timeout=task.request_timeout,
            reattach_on_clear=reattach_on_clear,
            **({"not_found_ok": True} if not_found_ok else {}),
            # account emails, not secrets: the triggerer builds the same credentials from the connection
            impersonation_chain=list(parse_impersonation_chain(getattr(task, "impersonation_chain", None))) or None,
            deferred_try=_try_number(context) if context is not None else None,
        ),
        method_name="execute_complete",
        timeout=_defer_timeout(deadline),
    )


def resumed_by_a_later_try(task, context: Context, event: dict) -> bool:
    """Whether ``execute_complete`` got an earlier try's trigger event: then the try must start over.

    Airflow 3.0.x's execution API keeps ``next_method``/``next_kwargs`` when a try that resumed from a
    deferral fails into ``up_for_retry`` (``_create_ti_state_update_query_and_update_state`` sets only
    the state; apache/airflow#56704, fixed by #56731, which clears both: 3.1.8 has it). The retry is then
    started at ``execute_complete`` with the failed try's event (its failed job) and would fail again
    without running. 2.11 and 3.1+ clear them, and the event's try always matches there.
    The trigger echoes the try in the event, not the deferral's ``kwargs``: ``dag.test()`` replaces
    ``next_kwargs`` with the event alone on every version. A trigger from before ``deferred_try``
    existed sends none: no check.
    """
    deferred_try = event.get("deferred_try") if isinstance(event, dict) else None
    if deferred_try is None or _try_number(context) == deferred_try:
        return False
    task.log.warning(
        "Try %d was resumed with the trigger event of try %d (Airflow 3.0 keeps a failed try's "
        "next_method on retry, apache/airflow#56704): starting this try from the beginning",
        _try_number(context), deferred_try)
    return True


def _try_number(context: Context) -> int:
    return int(getattr(context["ti"], "try_number", 1) or 1)


def try_start(context: Context) -> datetime:
    """When this try started (now, if the context does not say)."""
    return getattr(context.get("ti"), "start_date", None) or _now()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _defer_timeout(deadline: datetime | None) -> timedelta | None:
    """Airflow's own deferral timeout: a backstop that fires only after our trigger's deadline.

    On a trigger timeout Airflow neither calls the trigger's ``on_kill`` nor lets it finish, so the
    trigger enforces ``deadline`` itself (cancel, then a timeout event) and Airflow's timeout comes
    ``_DEFER_TIMEOUT_GRACE`` later, for a trigger that could not act (e.g. no triggerer running).
    Airflow 3 applies no ``execution_timeout`` to a deferred task: this and the trigger's deadline
    are the only limits. Airflow 2 caps the deferral timeout at start + execution_timeout, i.e. our
    deadline itself: whichever fires first, the job is cancelled (by the trigger at its deadline, or
    by the trigger's kill fallback when Airflow's timeout cancels it).
    """
    if deadline is None:
        return None
    return max(deadline - _now(), timedelta(0)) + _DEFER_TIMEOUT_GRACE


def check_impersonation_chain(value: Any) -> None:
    """At DAG-parse time for a literal value; a template (``{{ ... }}``) is checked once rendered."""
    if not (isinstance(value, str) and "{{" in value):
        parse_impersonation_chain(value)
