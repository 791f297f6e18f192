"""The attach-or-run loop: find the ID's latest generation, apply :func:`decide`, insert at most one job.

I/O is injected (``get_job`` / ``insert_job`` / ``locate``), so the loop is the same for the real hook,
for uploads and for tests. Races are settled by BigQuery itself: an insert that loses to another attempt
gets a 409, and the loop reads the winner's job and decides again.

**The generation walk** (:func:`find_latest_generation`). Each try inserts at most one new generation,
so the tries made in the current clear cycle bound the highest generation that can exist: the caller
passes ``bound`` = tries made so far in this cycle, this one included, minus one. The walk reads
``bound`` first; if it exists, upward (``bound + 1``, ... until a 404: the bound may underestimate,
e.g. after ``retries`` was edited); if not, downward until a generation exists. The first one found
from the top is the latest, so a gap below it (a failed generation's metadata deleted) can never make
an earlier generation run again. Cost: one ``jobs.get`` for a first try, two for a retry after a
failed generation, at most ``bound + 1`` when tries failed before inserting anything: bounded by the
try count, where walking up from ``_0`` cost every generation on every try.

**Regional jobs without a location.** Outside the US and EU multi-regions ``jobs.get`` answers 404
without the job's location, so a 404 only means "free" when the location is known. When it is not
(``base.location`` is ``None``), ``locate(base)`` (``jobs.list``, which spans all locations) finds
where any generation of the ID lives: when a walk without a location finds nothing although an
earlier try of the cycle may have inserted (``bound > 0``; US and EU jobs are found without a
location, so they never pay the list), and after a 409 whose read answers 404 (also when a location is known:
it may have changed between tries, e.g. in the connection). A located job's location is used
from then on; a 409 whose job cannot be located fails with an error naming ``location`` before
anything else is inserted.
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

Locate = Callable[[JobRef], "str | None"]


class JobsApi(Protocol):
    def get_job(self, ref: JobRef) -> dict | None: ...


@dataclass(frozen=True)
class Outcome:
    """The job this attempt must follow, and how it got it."""

    job: dict
    ref: JobRef  # with the location BigQuery reports for the job
    action: Action  # INSERT (we inserted it), ATTACH, SUCCEED or FAIL
    generation: int


class _Located(Exception):
    """The base's location was unknown and has just been found: walk again with it."""

    def __init__(self, base: JobRef):
        self.base = base


def generation_of(job_id: str, base_job_id: str) -> int | None:
    """Which generation of ``base_job_id`` the ID ``job_id`` is, or ``None`` if it is none of them."""
    if job_id == base_job_id:
        return 0
    head, sep, tail = job_id.rpartition("_")
    if sep and head == base_job_id and tail.isdigit() and not tail.startswith("0"):
        return int(tail)
    return None


def find_latest_generation(api: JobsApi, base: JobRef, bound: int = 0) -> tuple[int, dict | None]:
    """The highest generation that exists and its job, ``(-1, None)`` when none does (see module doc)."""
    bound = max(0, int(bound))

    def read(generation: int) -> dict | None:
        return api.get_job(base.with_job_id(generation_job_id(base.job_id, generation)))

    job = read(bound)
    if job is not None:
        generation = bound
        while (above := read(generation + 1)) is not None:
            generation, job = generation + 1, above
        return generation, job
    for generation in range(bound - 1, -1, -1):
        job = read(generation)
        if job is not None:
            return generation, job
    return -1, None


def attach_or_run(
    api: JobsApi,
    base: JobRef,
    insert_job: Callable[[JobRef], dict],
    *,
    rerun_cancelled: bool = True,
    bound: int = 0,
    locate: Locate | None = None,
    max_generations: int = MAX_GENERATIONS,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = lambda msg: None,
) -> Outcome:
    """Return the one job this task instance follows, inserting it only if no usable job exists.

    ``insert_job(ref)`` inserts the job under ``ref`` and returns the resource, raising
    :class:`JobAlreadyExists` on a 409. It is retried under the same ID by the caller's transport
    when its outcome is unknown, which is safe precisely because the ID is fixed. ``bound``: tries
    made in this clear cycle before this one (see the module docstring); ``locate``: finds the
    location of a generation of the ID when ``base`` has none.
    """
    latest = None
    if base.location is None and locate is not None and bound > 0:
        # Without a location only US/EU jobs answer: a walk that finds nothing proves nothing.
        latest = find_latest_generation(api, base, bound)
        if latest[1] is None:
            located = _locate(base, locate, log)
            if located is not None:
                base, latest = located, None
    while True:
        try:
            return _walk(api, base, insert_job, rerun_cancelled, bound, locate, max_generations, sleep, log, latest)
        except _Located as found:
            base, latest = found.base, None


def _walk(api, base, insert_job, rerun_cancelled, bound, locate, max_generations, sleep, log, latest) -> Outcome:
    generation, job = latest or find_latest_generation(api, base, bound)
    generation = max(generation, 0)
    while True:
        ref = base.with_job_id(generation_job_id(base.job_id, generation))
        action = decide(job, rerun_cancelled=rerun_cancelled)
        if action is Action.NEXT_GENERATION:
            log(f"Job {ref} ended with an error; running the next generation of the job ID.")
            generation, job = generation + 1, None  # known free: the walk read it, or nothing is above
            if generation >= max_generations:
                raise RuntimeError(
                    f"{max_generations} generations of job {base} all failed; refusing to start another. "
                    "Use a new job_id_prefix or clear the task to start over."
                )
            continue
        if action is not Action.INSERT:
            return Outcome(job=job, ref=ref_of_job(job, ref), action=action, generation=generation)
        try:
            job = insert_job(ref)
            return Outcome(job=job, ref=ref_of_job(job, ref), action=Action.INSERT, generation=generation)
        except JobAlreadyExists:
            log(f"Job ID {ref} was taken meanwhile (409 duplicate); reading that job.")
            job = _read_after_conflict(api, base, ref, sleep, locate, log)


def _locate(base: JobRef, locate: Locate, log: Callable[[str], None]) -> JobRef | None:
    location = locate(base)
    if location is None:
        return None
    log(f"Job ID {base.job_id} lives in location {location} (found with jobs.list); following it there.")
    return JobRef(base.job_id, base.project_id, location)


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


def _read_after_conflict(api: JobsApi, base: JobRef, ref: JobRef, sleep, locate: Locate | None, log) -> Mapping:
    job = api.get_job(ref)
    if job is None and locate is not None:
        # A 404 after a 409: a regional job read without its location, or a location changed
        # between tries (the job ID is unique per project, whatever the location): find where it is.
        located = _locate(base, locate, log)
        if located is not None and located.location != ref.location:
            raise _Located(located)
    job = job or reread_until_visible(api, ref, sleep)
    if job is None:
        raise JobNotVisible(
            f"BigQuery says job ID {ref.job_id} exists in project {ref.project_id} but it cannot be read"
            f" in location {ref.location or '(none given)'}: set the task's location (or the connection's"
            " 'location' extra) to the job's location, and check that this account may see the job"
            " (bigquery.jobs.get, bigquery.jobs.list)."
        )
    return job
