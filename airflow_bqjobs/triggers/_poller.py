"""One poller per (connection, project, request timeout) per event loop per process, shared by triggers.

Every :class:`~airflow_bqjobs.triggers.job.BigQueryJobTrigger` waiting on a job of a project
registers with that project's poller. Each round the poller makes one ``jobs.list``
(``stateFilter`` pending and running, minimal projection, ``minCreationTime`` bounded by the oldest
watched job, paged to the end), and one ``jobs.get`` only for the watched jobs that left that set:
N waiting jobs cost O(1) requests per round plus about one read per job. What to read and whom to
wake is decided by the pure :class:`~airflow_bqjobs.core.poll_book.PollBook`.

Lifecycle:

* The poller's task starts with its first waiter and ends when the last one leaves; its state is
  rebuilt from the triggers that register, never persisted (a restarted triggerer's triggers simply
  register again).
* A waiter leaving (trigger cancelled: user kill, takeover, restart, deadline) never cancels a list
  or read in flight: those run in the pool of :func:`~airflow_bqjobs.hooks.shared.executor`, and
  their answers are applied to whoever still waits.
* If the task dies of an unexpected error it is restarted (after ``RESTART_DELAY_S``); a waiting
  trigger also calls :meth:`JobPoller.ensure_running` every ``WATCHDOG_S``, so no trigger waits on a
  dead poller.
* Pollers are per event loop (a task belongs to one loop) and per process (after a fork the child
  builds its own); the HTTP session and credentials below them are per connection per process.
* Transient list errors are retried with backoff and logged: waiters keep waiting. A list that
  keeps failing switches to per-job reads until a list succeeds again (see PollBook).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import time
import weakref
from typing import Any, Callable

from airflow_bqjobs.core.job_ref import JobRef
from airflow_bqjobs.core.poll_book import PollBook, Waiter, Watch, list_entry_hook
from airflow_bqjobs.core.transient import is_transient

log = logging.getLogger(__name__)

PAGE_SIZE = 1000
RESTART_DELAY_S = 1.0
WATCHDOG_S = 30.0
STATES = ("pending", "running")

_pollers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # loop -> {key: JobPoller}


def job_poller(hook) -> JobPoller:
    """The running loop's poller for the hook's (connection, credentials, project, request timeout).

    The shared hooks of :mod:`airflow_bqjobs.hooks.shared` are one object per connection content,
    impersonation chain, project and timeout, so the hook itself is the key: a trigger that
    impersonates another account, or a changed connection, gets a poller of its own."""
    loop = asyncio.get_running_loop()
    key = (os.getpid(), id(hook), hook.gcp_conn_id, hook.project_id, hook.request_timeout)
    pollers = _pollers.setdefault(loop, {})
    poller = pollers.get(key)
    if poller is None:
        poller = pollers[key] = JobPoller(hook, loop)
    return poller


class JobPoller:
    def __init__(self, hook, loop: asyncio.AbstractEventLoop) -> None:
        self.hook = hook
        self.loop = loop
        self.book = PollBook()
        self.project_id = hook.project_id
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self.restarts = 0
        self.rounds = 0
        self._interval = self.book.list_interval()  # the interval the current sleep was planned with

    # -- registration ----------------------------------------------------------------------------

    def watch(self, ref: JobRef, *, poll_interval: float, not_found_ok: bool = False,
              not_found_delays: tuple[float, ...] = (), on_update: Callable[[dict], None] | None = None,
              update_interval: float | None = None) -> asyncio.Future:
        """Wait for job ``ref`` (of this poller's project); the future gets the poll book's outcome."""
        future = self.loop.create_future()

        def deliver(outcome: tuple[str, Any]) -> None:
            if not future.done():
                future.set_result(outcome)

        if on_update is not None:  # called from the poller's task: log as the watching trigger does
            on_update = functools.partial(contextvars.copy_context().run, on_update)
        waiter = Waiter(ref.job_id, ref.location, float(poll_interval), deliver, not_found_ok=not_found_ok,
                        not_found_delays=tuple(not_found_delays), on_update=on_update,
                        update_interval=update_interval)
        future.waiter = waiter  # type: ignore[attr-defined]
        self.book.add(waiter, time.monotonic())
        self.ensure_running()
        if poll_interval < self._interval:
            self._wake.set()  # a shorter interval than the current sleep's: re-plan now
        return future

    def unwatch(self, future: asyncio.Future) -> None:
        """The waiter of ``future`` leaves (every trigger calls this when its wait ends, however it ends)."""
        waiter = getattr(future, "waiter", None)
        if waiter is not None:
            # Breaks the cycle future -> waiter -> deliver -> future: the wait's objects (and the job
            # resource in the result) are freed now, not by the garbage collector's next full pass.
            future.waiter = None  # type: ignore[attr-defined]
            self.book.remove(waiter)

    def ensure_running(self) -> None:
        if self.book.watches and (self._task is None or self._task.done()):
            # In a context of its own: not the context (log routing, task identity) of the trigger that
            # happened to start it, which Airflow's triggerer uses to route log lines to its task's log.
            # (A task copies the context current at its creation; Python 3.10 has no create_task(context=).)
            self._task = contextvars.Context().run(self.loop.create_task, self._run(),
                                                   name=f"bqjobs-poller-{self.project_id}")
            self._task.add_done_callback(self._on_task_done)

    def _on_task_done(self, task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is None:
            return
        self.restarts += 1
        log.error("BigQuery job poller for project %s died; restarting in %.0f s", self.project_id,
                  RESTART_DELAY_S, exc_info=task.exception())
        if not self.loop.is_closed():
            self.loop.call_later(RESTART_DELAY_S, self.ensure_running)

    # -- the rounds --------------------------------------------------------------------------------

    async def _run(self) -> None:
        next_list = time.monotonic()  # first list at once: jobs already DONE are seen quickly
        while self.book.watches:
            now = time.monotonic()
            if now >= next_list:
                next_list = await self._list_round()
            elif self.book.fallback or self.book.next_read_at() is not None:
                await self._read(self.book.due(now))
            wake_at = min(t for t in (next_list, self.book.next_read_at()) if t is not None)
            self._wake.clear()
            if wake_at > time.monotonic():
                try:
                    await asyncio.wait_for(self._wake.wait(), wake_at - time.monotonic())
                except asyncio.TimeoutError:
                    pass
                if self._wake.is_set():
                    next_list = min(next_list, time.monotonic() + self.book.list_interval())

    async def _list_round(self) -> float:
        """One list (and the reads it calls for); returns when (``time.monotonic()``) to list next.

        Rounds start every interval from the start of the previous list, so a list's own time (5
        pages at N = 5,000) does not add to how late a finished job is seen; after a list longer than
        the interval the next one waits a quarter interval (one poller never lists non-stop). After a
        failed list, its backoff counts from now."""
        self.rounds += 1
        min_ms = self.book.min_creation_ms()
        started = time.monotonic()
        keep = self.book.progress_wanted(started)
        try:
            entries = await self._call(self._list, min_ms, keep)
        except Exception as exc:
            transient = is_transient(exc)
            pause = self.book.list_failed(permanent=not transient)
            if self.book.fallback:
                log.warning("jobs.list keeps failing for project %s (%s): reading each job instead, list "
                            "retried in %.0f s", self.project_id, exc, pause)
                await self._read(self.book.due(time.monotonic()))
            else:
                log.warning("Transient error listing jobs of project %s (%s); retrying in %.1f s",
                            self.project_id, exc, pause)
            return time.monotonic() + pause
        to_read = self.book.after_list(entries, time.monotonic(), started=started)
        listed_out = set(map(id, to_read))
        await self._read(to_read + [w for w in self.book.due(time.monotonic()) if id(w) not in listed_out])
        self._interval = interval = self.book.list_interval()
        return max(started + interval, time.monotonic() + interval / 4)

    def _list(self, min_ms: int | None, keep: frozenset[str]) -> list[tuple]:
        """In the pool: the pages decoded straight into ``Listed`` tuples, whole entries only for ``keep``."""
        return list(self.hook.list_jobs(project_id=self.project_id, state_filter=STATES, projection="minimal",
                                        min_creation_time_ms=min_ms, page_size=PAGE_SIZE, retry=None,
                                        object_hook=list_entry_hook(keep)))

    async def _read(self, watches: list[Watch]) -> None:
        if watches:
            await asyncio.gather(*(self._read_one(w) for w in watches))

    async def _read_one(self, watch: Watch) -> None:
        ref = JobRef(watch.job_id, project_id=self.project_id, location=watch.location)
        try:
            job = await self._call(self.hook.get_job, ref, retry=None)
        except Exception as exc:
            transient = is_transient(exc)
            delay = self.book.read_failed(watch, str(exc), transient, time.monotonic())
            if delay is not None:
                log.warning("Transient error reading job %s (%s); retrying in %.1f s", ref, exc, delay)
            return
        self.book.after_read(watch, job, time.monotonic())

    async def _call(self, fn, *args, **kwargs):
        from functools import partial

        from airflow_bqjobs.hooks.shared import executor

        return await self.loop.run_in_executor(executor(), partial(fn, *args, **kwargs))
