"""The shared poller's bookkeeping: which watched jobs one ``jobs.list`` settles, which need a read.

Pure (no I/O, no asyncio): the poller (``triggers/_poller.py``) feeds it what the list and the reads
answered and the time, and it says what to read next and which waiters to wake with what. Its state
is rebuilt from the waiting triggers (they register again after any restart), never persisted.

The rule, per watched job:

* **listed**: in the last list of the project's pending and running jobs: still running, no read.
* left that set (or never in it): one ``jobs.get``. DONE wakes every waiter with the resource;
  PENDING / RUNNING (another principal's job, a child job, a list that lags) makes the job
  **unlisted**: it is read on its own waiters' poll schedule until a list shows it again;
  not found is re-read briefly (eventual consistency), then wakes the waiters that do not accept
  "not there yet" (``not_found_ok``) with an error, and keeps the others reading on schedule.
* progress: a list entry is handed to a waiter's ``on_update`` at most once per its
  ``update_interval`` (default: its ``poll_interval``; the trigger asks for one per progress line,
  so once a minute); the other entries of a list are decoded straight
  into ``Listed`` tuples (:func:`list_entry_hook`), which the garbage collector does not track.
  A list of N running jobs every round would otherwise add N x ~5 containers to the collector's
  oldest generation each round, and at N = 5,000 its full collections (100-300 ms each, the
  triggerer's event loop stopped meanwhile) came every few seconds.
* a list that fails persistently (``FALLBACK_AFTER`` transient failures in a row, or one permanent
  error such as a missing ``bigquery.jobs.list`` permission) switches to **fallback**: every job
  read on its schedule, the list retried every ``FALLBACK_RETRY_S``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Iterable, Iterator

from airflow_bqjobs.core.backoff import backoff_delays, poll_intervals

# Seconds between two lists of a project, at most (a waiter with a shorter poll_interval shortens it).
LIST_INTERVAL_S = 2.0
LIST_INTERVAL_FLOOR_S = 0.01
FALLBACK_AFTER = 3
FALLBACK_RETRY_S = 60.0
# minCreationTime is the oldest watched job's creation time minus this (clock skew, ms rounding).
CREATION_MARGIN_MS = 60_000

DONE_OUTCOME, NOT_FOUND_OUTCOME, ERROR_OUTCOME = "done", "not_found", "error"


# One ``jobs.list`` entry, reduced: ``(job_id, state, created_ms, entry)``, ``entry`` the whole entry
# (kept for a waiter's progress) or None. A plain tuple: with atomic items only, the garbage collector
# stops tracking it (it does not do that for a NamedTuple, a tuple subclass).
Listed = tuple


def listed(entry: dict | Listed, keep: Collection[str] | None = None) -> Listed:
    """``entry`` reduced; the whole entry is kept if ``keep`` is None or holds its job ID."""
    if isinstance(entry, tuple):
        return entry
    job_id = (entry.get("jobReference") or {}).get("jobId")
    state = entry.get("state") or (entry.get("status") or {}).get("state")
    return (job_id, state, _creation_ms(entry), entry if keep is None or job_id in keep else None)


def list_entry_hook(keep: Collection[str]) -> Callable[[dict], Any]:
    """A ``json.loads`` ``object_hook`` for a ``jobs.list`` page: each job entry becomes a ``Listed``
    tuple as soon as it is decoded (holding the whole entry only for job IDs in ``keep``); every other
    object stays a dict."""

    def hook(obj: dict) -> Any:
        ref = obj.get("jobReference")
        if isinstance(ref, dict) and "jobId" in ref:
            return listed(obj, keep)
        return obj

    return hook


@dataclass(eq=False)
class Waiter:
    """One trigger waiting on one job. ``deliver`` receives ``(DONE_OUTCOME, resource)``,
    ``(NOT_FOUND_OUTCOME, None)`` or ``(ERROR_OUTCOME, message)`` once; ``on_update`` (optional) the job's state while it runs: a list
    entry (minimal projection) at most once per ``update_interval`` (None: ``poll_interval``), and
    every resource read: progress for free."""

    job_id: str
    location: str | None
    poll_interval: float
    deliver: Callable[[tuple[str, Any]], None]
    not_found_ok: bool = False
    not_found_delays: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    on_update: Callable[[dict], None] | None = None
    update_interval: float | None = None


@dataclass(eq=False)
class Watch:
    """One watched job (several waiters may share it)."""

    job_id: str
    location: str | None
    waiters: list[Waiter] = field(default_factory=list)
    created_ms: int | None = None
    added_at: float = 0.0
    listed: bool = False
    read_at: float | None = 0.0  # when to read it next; None: the list answers for it
    schedule: Iterator[float] | None = None
    not_found: Iterator[float] | None = None
    backoff: Iterator[float] | None = None
    updated_at: float | None = None  # when the waiters' on_update last got a state

    @property
    def poll_interval(self) -> float:
        return min(w.poll_interval for w in self.waiters)


class PollBook:
    """The watched jobs of one (connection, project)."""

    def __init__(self) -> None:
        self.watches: dict[str, Watch] = {}
        self.fallback = False
        self.list_failures = 0
        self._list_backoff: Iterator[float] | None = None

    # -- registration ----------------------------------------------------------------------------

    def add(self, waiter: Waiter, now: float) -> Watch:
        watch = self.watches.get(waiter.job_id)
        if watch is None:
            # Read by the next list, or at once when the list is out of order.
            watch = self.watches[waiter.job_id] = Watch(waiter.job_id, waiter.location, added_at=now,
                                                        read_at=now if self.fallback else None)
        watch.waiters.append(waiter)
        if watch.location is None:
            watch.location = waiter.location
        return watch

    def remove(self, waiter: Waiter) -> None:
        watch = self.watches.get(waiter.job_id)
        if watch is None:
            return
        if waiter in watch.waiters:
            watch.waiters.remove(waiter)
        if not watch.waiters:
            del self.watches[waiter.job_id]

    def __len__(self) -> int:
        return len(self.watches)

    # -- the list ----------------------------------------------------------------------------------

    def list_interval(self) -> float:
        shortest = min((w.poll_interval for w in self.watches.values()), default=LIST_INTERVAL_S)
        return max(LIST_INTERVAL_FLOOR_S, min(LIST_INTERVAL_S, shortest))

    def min_creation_ms(self) -> int | None:
        """``minCreationTime`` for the list: None (unbounded) while any watched job's creation is unknown."""
        times = [w.created_ms for w in self.watches.values()]
        if not times or None in times:
            return None
        return max(0, min(times) - CREATION_MARGIN_MS)

    def progress_wanted(self, now: float) -> frozenset[str]:
        """Job IDs whose whole list entry the next list should keep: a waiter wants progress
        (``on_update``) and its job's last update is at least that waiter's ``update_interval`` old."""
        return frozenset(job_id for job_id, w in self.watches.items() if _update_due(w, now))

    def after_list(self, entries: Iterable[dict | Listed], now: float, started: float | None = None) -> list[Watch]:
        """Apply a successful list of pending/running jobs; returns the watches to read now.

        ``entries``: the list's entries, as dicts or :class:`Listed` (only those holding their entry
        update the waiters' progress). ``started``: when the list was sent; a job registered after
        that is left to the next list.
        """
        self.list_failures, self._list_backoff, self.fallback = 0, None, False
        running = {}
        for item in entries:
            job_id, state, created_ms, entry = listed(item)
            if job_id in self.watches and state != "DONE":
                running[job_id] = (created_ms, entry)
        to_read = []
        for job_id, watch in self.watches.items():
            item = running.get(job_id)
            if item is not None:
                watch.listed, watch.read_at, watch.schedule, watch.backoff = True, None, None, None
                watch.created_ms = watch.created_ms or item[0]
                if item[1] is not None:
                    _update(watch, item[1], now)
            elif watch.read_at is None and not watch.listed and started is not None and watch.added_at > started:
                continue  # registered while this list was in flight
            elif watch.listed or watch.read_at is None:
                watch.listed = False
                to_read.append(watch)
            elif watch.read_at <= now:
                to_read.append(watch)
        return to_read

    def list_failed(self, permanent: bool) -> float:
        """A list failed: the seconds to wait before the next one (fallback mode may start)."""
        self.list_failures += 1
        if permanent or self.list_failures >= FALLBACK_AFTER:
            if not self.fallback:
                self.fallback = True
                for watch in self.watches.values():
                    watch.listed = False
                    if watch.read_at is None:
                        watch.read_at = 0.0
            return FALLBACK_RETRY_S
        self._list_backoff = self._list_backoff or backoff_delays(maximum=LIST_INTERVAL_S * 8)
        return next(self._list_backoff)

    def due(self, now: float) -> list[Watch]:
        """Watches read on their own schedule (unlisted, or all of them in fallback) that are due."""
        return [w for w in self.watches.values() if w.read_at is not None and w.read_at <= now]

    def next_read_at(self) -> float | None:
        times = [w.read_at for w in self.watches.values() if w.read_at is not None]
        return min(times, default=None)

    # -- reads -------------------------------------------------------------------------------------

    def after_read(self, watch: Watch, job: dict | None, now: float) -> None:
        """Apply a ``jobs.get`` answer (None: not found); wakes waiters of a finished job."""
        if self.watches.get(watch.job_id) is not watch:
            return  # every waiter left while the read was in flight
        watch.backoff = None
        if job is None:
            watch.not_found = watch.not_found or iter(max(watch.waiters, key=lambda w: len(w.not_found_delays))
                                                     .not_found_delays)
            delay = next(watch.not_found, None)
            if delay is not None:
                watch.read_at = now + delay
                return
            for waiter in [w for w in watch.waiters if not w.not_found_ok]:
                self._finish(watch, waiter, (NOT_FOUND_OUTCOME, None))
            if self.watches.get(watch.job_id) is watch:
                watch.read_at = now + self._next_scheduled(watch)
            return
        watch.not_found = None
        watch.created_ms = watch.created_ms or _creation_ms(job)
        if (job.get("status") or {}).get("state") == "DONE":
            for waiter in list(watch.waiters):
                self._finish(watch, waiter, (DONE_OUTCOME, job))
            return
        _update(watch, job, now)
        watch.read_at = now + self._next_scheduled(watch)

    def read_failed(self, watch: Watch, message: str, transient: bool, now: float) -> float | None:
        """A ``jobs.get`` failed: transient delays this job's next read (returned); permanent ends its waits."""
        if self.watches.get(watch.job_id) is not watch:
            return None
        if not transient:
            for waiter in list(watch.waiters):
                self._finish(watch, waiter, (ERROR_OUTCOME, message))
            return None
        watch.backoff = watch.backoff or backoff_delays(maximum=max(watch.poll_interval, 1.0))
        delay = next(watch.backoff)
        watch.read_at = now + delay
        return delay

    def _next_scheduled(self, watch: Watch) -> float:
        if watch.schedule is None:
            watch.schedule = poll_intervals(watch.poll_interval)
        return next(watch.schedule)

    def _finish(self, watch: Watch, waiter: Waiter, outcome: tuple[str, Any]) -> None:
        self.remove(waiter)
        waiter.deliver(outcome)


def _creation_ms(job: dict) -> int | None:
    try:
        return int((job.get("statistics") or {})["creationTime"])
    except (KeyError, TypeError, ValueError):
        return None


def _update_due(watch: Watch, now: float) -> bool:
    for waiter in watch.waiters:
        if waiter.on_update is not None and (watch.updated_at is None or now - watch.updated_at >= (
                waiter.poll_interval if waiter.update_interval is None else waiter.update_interval)):
            return True
    return False


def _update(watch: Watch, job: dict, now: float) -> None:
    watch.updated_at = now
    for waiter in watch.waiters:
        if waiter.on_update is not None:
            try:
                waiter.on_update(job)
            except Exception:  # noqa: BLE001 - progress reporting must never stop the polling
                pass
