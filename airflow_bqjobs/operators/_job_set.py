"""What the cancel and delete operators share: a set of jobs, followed until every one is DONE.

Each pass reads every job; while some are unfinished, the operator waits for the first of them
through :meth:`JobWaitingOperator.wait_for_job` (sync polling, or one :class:`BigQueryJobTrigger`
at a time) and then reads them all again, so jobs that finished meanwhile cost one read each.

Resuming is stateless: ``execute_complete`` re-renders ``job_id`` and re-reads BigQuery instead of
trusting kwargs carried through the deferral (``dag.test()`` drops those, and a fresh read is the
truth anyway). Neither operator ever cancels anything on kill.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from airflow_bqjobs._compat import AirflowException, Context
from airflow_bqjobs.core.decision import job_state
from airflow_bqjobs.core.job_ref import JobRef, parse_job_ref
from airflow_bqjobs.core.job_refs import parse_job_refs
from airflow_bqjobs.links import has_console_link, persist_console_link
from airflow_bqjobs.operators._waiting import JobWaitingOperator, resumed_by_a_later_try
from airflow_bqjobs.triggers import job as job_trigger

Targets = list[tuple[JobRef, Mapping | None]]


class JobSetOperator(JobWaitingOperator):
    """Base of the operators that act on a list of jobs and may wait for them to be DONE.

    Subclasses provide :meth:`read_targets` (the jobs, as BigQuery shows them now) and
    :meth:`settled` (act on them once none needs waiting for; its return value is the XCom).
    """

    template_fields: Sequence[str] = ("job_id", "project_id", "location", "impersonation_chain")

    def __init__(self, *, job_id: Any = None, **kwargs: Any) -> None:
        super().__init__(cancel_on_kill=False, **kwargs)
        self.job_id = job_id

    def job_refs(self, hook) -> list[JobRef]:
        """``job_id`` parsed (all of it, before any request) and completed with the hook's defaults."""
        refs = parse_job_refs(self.job_id, project_id=self.project_id, location=self.location)
        return list(dict.fromkeys(map(hook.resolve, refs)))

    def read_jobs(self, hook, refs: Iterable[JobRef]) -> Targets:
        """(ref, job or None) per distinct job; a found job's ref is BigQuery's own (location included)."""
        seen: dict[JobRef, Mapping | None] = {}
        for ref in refs:
            job = hook.get_job(ref)
            if job is not None and job.get("jobReference"):
                ref = parse_job_ref(job["jobReference"], field="jobReference")
            seen.setdefault(ref, job)
        return list(seen.items())

    def read_targets(self, context: Context, hook) -> Targets:
        raise NotImplementedError  # abstract: see the class docstring

    def settled(self, context: Context, hook, targets: Targets) -> Any:
        raise NotImplementedError  # abstract: see the class docstring

    def waits(self) -> bool:
        """Whether unfinished jobs are awaited before :meth:`settled`."""
        return True

    # -- following -------------------------------------------------------------------------------

    def follow(self, context: Context, hook, targets: Targets | None = None) -> Any:
        """Wait until no target is PENDING or RUNNING (one job at a time), then :meth:`settled`."""
        while True:
            targets = self.read_targets(context, hook) if targets is None else targets
            if has_console_link(self) and len(targets) == 1 and targets[0][1] is not None:
                persist_console_link(context, targets[0][0])  # one job: before waiting, as it is known
            unfinished = [(ref, job) for ref, job in targets if job is not None and job_state(job) != "DONE"]
            if not unfinished or not self.waits():
                return self.settled(context, hook, targets)
            ref, job = unfinished[0]
            self.log.info("%d job(s) not DONE yet; waiting for %s (%s).", len(unfinished), ref, job_state(job))
            self.wait_for_job(context, hook, ref, dict(job))
            targets = None

    def on_job_done(self, context: Context, job: dict) -> dict:
        """The awaited job is DONE: back to :meth:`follow`, which re-reads them all (no summary, no failure)."""
        return job

    def execute_complete(self, context: Context, event: dict) -> Any:
        """Resume after one job's trigger fired: re-read every job, wait for the next unfinished one."""
        if resumed_by_a_later_try(self, context, event):
            return self.execute(context)
        ref = job_trigger.job_ref_of(event)
        hook = self.make_hook(context)
        status = event.get("status")
        if status == job_trigger.TIMEOUT:
            raise AirflowException(f"{event.get('message')}. Task timed out.")
        if status == job_trigger.ERROR:
            job = hook.get_job(ref)
            if job is not None and job_state(job) != "DONE":  # the trigger could not read it, we can
                raise AirflowException(event.get("message") or f"Waiting for job {ref} failed")
        return self.follow(context, hook)
