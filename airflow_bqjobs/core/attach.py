"""The attach-or-run loop: walk the ID's generations, apply :func:`decide`, insert at most one job.

I/O is injected (``get_job`` / ``insert_job``), so the loop is the same for the real hook, for uploads
and for tests. Races are settled by BigQuery itself: an insert that loses to another attempt gets a
409, and the loop reads the winner's job and decides again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol

from airflow_bqjobs.core.decision import Action, decide
from airflow_bqjobs.core.errors import JobAlreadyExists, JobNotVisible
from airflow_bqjobs.core.job_id import generation_job_id
from airflow_bqjobs.core.job_ref import JobRef, ref_of_job

MAX_GENERATIONS = 100
# After a 409 the job may not be readable yet (eventual consistency): re-read on this schedule.
READ_AFTER_CONFLICT_DELAYS = (0.25, 0.5, 1.0, 2.0, 4.0)


class JobsApi(Protocol):
    def get_job(self, ref: JobRef) -> dict | None: ...


@dataclass(frozen=True)
class Outcome:
    """The job this attempt must follow, and how it got it."""

    job: dict
    ref: JobRef
    action: Action  # INSERT (we inserted it), ATTACH, SUCCEED or FAIL
    generation: int


def attach_or_run(
    api: JobsApi,
    base: JobRef,
    insert_job: Callable[[JobRef], dict],
    *,
    rerun_cancelled: bool = True,
    max_generations: int = MAX_GENERATIONS,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = lambda msg: None,
) -> Outcome:
    """Return the one job this task instance follows, inserting it only if no usable job exists.

    ``insert_job(ref)`` inserts the job under ``ref`` and returns the resource, raising
    :class:`JobAlreadyExists` on a 409. It is retried under the same ID by the caller's transport
    when its outcome is unknown, which is safe precisely because the ID is fixed.
    """
    for generation in range(max_generations):
        ref = base.with_job_id(generation_job_id(base.job_id, generation))
        job = api.get_job(ref)
        while True:
            action = decide(job, rerun_cancelled=rerun_cancelled)
            if action is Action.NEXT_GENERATION:
                log(f"Job {ref_of_job(job, ref)} ended with an error; looking at the next generation of the job ID.")
                break
            if action is not Action.INSERT:
                return Outcome(job=job, ref=ref, action=action, generation=generation)
            try:
                return Outcome(job=insert_job(ref), ref=ref, action=Action.INSERT, generation=generation)
            except JobAlreadyExists:
                log(f"Job ID {ref} was taken meanwhile (409 duplicate); reading that job.")
                job = _read_after_conflict(api, ref, sleep)
    raise RuntimeError(
        f"{max_generations} generations of job {base} all failed; refusing to start another. "
        "Use a new job_id_prefix or clear the task to start over."
    )


def reread_until_visible(api: JobsApi, ref: JobRef, sleep: Callable[[float], None] = time.sleep) -> dict | None:
    """Re-read a job known to exist that just answered 404; ``None`` if it stays unreadable.

    BigQuery may briefly answer 404 for an existing job (eventual consistency, e.g. right after a 409
    or an insert): only a 404 that persists through :data:`READ_AFTER_CONFLICT_DELAYS` means gone.
    """
    for delay in READ_AFTER_CONFLICT_DELAYS:
        sleep(delay)
        job = api.get_job(ref)
        if job is not None:
            return job
    return None


def _read_after_conflict(api: JobsApi, ref: JobRef, sleep: Callable[[float], None]) -> Mapping:
    job = api.get_job(ref) or reread_until_visible(api, ref, sleep)
    if job is None:
        raise JobNotVisible(
            f"BigQuery says job ID {ref.job_id} exists in project {ref.project_id} but it cannot be read"
            f" in location {ref.location or '(default)'}: is the location right, and may this account"
            " see the job (bigquery.jobs.get)?"
        )
    return job
