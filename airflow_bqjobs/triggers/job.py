"""Waits for a BigQuery job in the triggerer, so no worker slot is held while BigQuery works.

Serialised kwargs hold only a connection id, a job reference, numbers and (if set) the
impersonation chain's account emails: never credentials (they are stored in the metadata DB); the
hook builds the same credentials from the connection as the worker did. The wait itself is shared:
every trigger registers with its project's poller (:mod:`airflow_bqjobs.triggers._poller`), which
lists the project's running jobs once per round and reads only the jobs that left that list, with
one HTTP session and one credentials object per connection (and impersonation chain) per process
(:mod:`airflow_bqjobs.hooks.shared`). Transient errors only delay the next round; ``poll_interval``
bounds how long a job may wait between two checks. Progress lines come from the list's statistics,
at no extra request.

Cancellation (all of it off with ``cancel_on_kill=False``):

* Deadline: the task's ``execution_timeout`` (start + timeout, passed as ``deadline``). The trigger
  enforces it itself (cancel the job, then a ``timeout`` event that fails the task), because Airflow
  does not call ``on_kill`` on a trigger timeout, and Airflow 3 applies no execution_timeout to a
  deferred task at all. The operator sets Airflow's deferral timeout a grace period later, as a
  backstop only.
* Stopped by Airflow: on Airflow >= 3.3 the triggerer calls :meth:`on_kill`, on older Airflow it just
  cancels the trigger (:meth:`_cancel_if_killed`). Either way this is not only a user's kill: 3.3
  puts a trigger reassigned to another triggerer (missed heartbeats, "event loop appears
  deadlocked") into the same cancel set as a user action, and older triggerers cancel on every
  restart. So both paths apply one rule (:func:`airflow_bqjobs.core.kill.may_cancel`): read the task
  instance's current state; ``deferred`` (or any state in which a try follows the job: a takeover, a
  restart, a retry) leaves the job running for the trigger that follows; ``failed``/``success``
  (marked by a user) cancels; cleared cancels unless ``reattach_on_clear`` (the cleared try
  reattaches to the job). A trigger stopped after its deadline (Airflow 2's own deferral timeout)
  cancels. Limits: if the state cannot be read (API server or metadata DB unreachable; reads are
  retried with backoff for 3 minutes; not retried once a stopping triggerer closed its supervisor
  channel) the job is left running; a task cleared and deferred again (a new try) before the old
  trigger reads its state looks like a takeover; after a takeover whose new copy fired an error for a
  job still running, the old copy's read sees the resumed task as cleared and cancels the job its
  retry reattaches to (the read returns the state only, not the try_number and max_tries that would
  tell them apart); and, as with every cancel, a job may finish before the cancel takes effect. The
  server-side ``jobTimeoutMs`` (from the task's execution_timeout) bounds whatever is left running.
* Triggerer restart: the trigger is rebuilt from :meth:`serialize` and keeps waiting; nothing is
  ever cancelled in ``cleanup``, which runs on every exit.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any, AsyncIterator

from airflow_bqjobs._compat import (
    TRIGGER_ON_KILL,
    BaseTrigger,
    SupervisorChannelClosed,
    TriggerEvent,
    aget_connection,
    task_instance_state,
)
from airflow_bqjobs.core.attach import READ_AFTER_CONFLICT_DELAYS
from airflow_bqjobs.core.backoff import backoff_delays
from airflow_bqjobs.core.credential_options import parse_impersonation_chain
from airflow_bqjobs.core.decision import error_result, job_state
from airflow_bqjobs.core.job_ref import JobRef, parse_job_ref
from airflow_bqjobs.core.kill import UNKNOWN, may_cancel, why
from airflow_bqjobs.core.progress import ProgressReporter

# Event statuses, read by the operators' execute_complete.
DONE = "done"
ERROR = "error"
TIMEOUT = "timeout"
# Reading the task's state when the trigger is stopped: each read may take STATE_READ_TIMEOUT_S; failed
# or unanswered reads are retried with backoff for STATE_READ_BUDGET_S in all. Not bound by Airflow's
# ``[triggerer] on_kill_timeout`` (30 s): the kill rule runs in a shielded task of its own, which goes on
# after Airflow stops waiting for ``on_kill``. A triggerer's supervisor answers the read, and it stalls
# under load (the Celery soak saw its loop stop for 30 s while a user marked a task failed).
STATE_READ_TIMEOUT_S = 20.0
STATE_READ_BUDGET_S = 180.0
STATE_READ_MAX_BACKOFF_S = 15.0
# Kill work in flight (strong references: a shielded task must not be garbage-collected).
_KILLS: set[asyncio.Task] = set()


class BigQueryJobTrigger(BaseTrigger):
    """Fires once the job is DONE (or its deadline passed, or it cannot be read)."""

    def __init__(
        self,
        job: dict | str,
        gcp_conn_id: str = "google_cloud_default",
        poll_interval: float = 10.0,
        deadline: float | None = None,
        cancel_on_kill: bool = True,
        request_timeout: float = 60.0,
        reattach_on_clear: bool = False,
        not_found_ok: bool = False,
        impersonation_chain: list[str] | str | None = None,
        deferred_try: int | None = None,
    ) -> None:
        super().__init__()
        self.ref = parse_job_ref(job, field="job")
        self.impersonation_chain = list(parse_impersonation_chain(impersonation_chain)) or None
        self.gcp_conn_id = gcp_conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = deadline
        self.cancel_on_kill = cancel_on_kill
        self.request_timeout = float(request_timeout)
        self.reattach_on_clear = bool(reattach_on_clear)
        # True: the job may not exist yet (a sensor's wait_for_existence); a 404 means "keep polling".
        self.not_found_ok = bool(not_found_ok)
        # The try that deferred, echoed in every event (operators._waiting.resumed_by_a_later_try).
        self.deferred_try = None if deferred_try is None else int(deferred_try)
        self._hook = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job": self.ref.to_api(),
                "gcp_conn_id": self.gcp_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "cancel_on_kill": self.cancel_on_kill,
                "request_timeout": self.request_timeout,
                "reattach_on_clear": self.reattach_on_clear,
                "not_found_ok": self.not_found_ok,
                **({"impersonation_chain": self.impersonation_chain} if self.impersonation_chain else {}),
                **({"deferred_try": self.deferred_try} if self.deferred_try is not None else {}),
            },
        )

    async def hook(self):
        """The shared hook of this connection and project (one session and credentials per process)."""
        if self._hook is None:
            from airflow_bqjobs.hooks.shared import ashared_hook

            self._hook = await ashared_hook(self.gcp_conn_id, aget_connection, project_id=self.ref.project_id,
                                            location=self.ref.location, request_timeout=self.request_timeout,
                                            impersonation_chain=self.impersonation_chain)
        return self._hook

    def _event(self, status: str, **fields: Any) -> TriggerEvent:
        if self.deferred_try is not None:
            fields["deferred_try"] = self.deferred_try
        return TriggerEvent({"status": status, "job": self.ref.to_api(), **fields})

    def _seconds_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.time()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            event = await self._wait()
        except asyncio.CancelledError:
            await self._cancel_if_killed()
            raise
        yield event

    async def _wait(self) -> TriggerEvent:
        """Register with the project's shared poller (``triggers/_poller.py``) until the job is DONE."""
        from airflow_bqjobs.core.poll_book import DONE_OUTCOME, NOT_FOUND_OUTCOME
        from airflow_bqjobs.triggers._poller import WATCHDOG_S, job_poller

        hook = await self.hook()
        ref = hook.resolve(self.ref)
        poller = job_poller(hook)
        progress = ProgressReporter(str(ref))

        def log_progress(job: dict) -> None:  # the task logs the final line when it resumes
            if job_state(job) != "DONE" and (line := progress.update(job)):
                self.log.info(line)

        outcome = poller.watch(ref, poll_interval=self.poll_interval, not_found_ok=self.not_found_ok,
                               not_found_delays=READ_AFTER_CONFLICT_DELAYS, on_update=log_progress,
                               update_interval=progress.interval)  # no more states than progress lines
        try:
            while not outcome.done():
                left = self._seconds_left()
                if left is not None and left <= 0:
                    return await self._time_out(hook)
                await asyncio.wait({outcome}, timeout=WATCHDOG_S if left is None else min(left, WATCHDOG_S))
                poller.ensure_running()  # a poller that died is restarted; no trigger waits on it forever
        finally:
            poller.unwatch(outcome)
        kind, value = outcome.result()
        if kind == DONE_OUTCOME:
            return self._event(DONE, error_result=error_result(value))
        if kind == NOT_FOUND_OUTCOME:
            return self._event(ERROR, message=f"Job {self.ref} was not found (metadata deleted, or wrong location?)")
        return self._event(ERROR, message=f"Cannot read job {self.ref}: {value}")

    async def _time_out(self, hook) -> TriggerEvent:
        message = f"Deadline passed while waiting for job {self.ref}"
        if self.not_found_ok:
            message += " (or for it to appear)"
        if self.cancel_on_kill:
            await self._cancel(hook, "deadline passed")
            message += "; cancellation requested"
        return self._event(TIMEOUT, message=message)

    async def _cancel(self, hook, why: str) -> None:
        from airflow_bqjobs.hooks.shared import executor

        try:  # in the pool of our BigQuery calls, not asyncio's default pool that every trigger shares
            job = await asyncio.get_running_loop().run_in_executor(executor(), hook.cancel_job, self.ref)
            self.log.info("Requested cancellation of job %s (%s); state %s", self.ref, why, job_state(job))
        except Exception:
            self.log.exception("Could not cancel job %s (%s); it may still be running", self.ref, why)

    async def on_kill(self) -> None:
        """Airflow 3.3+: a user action on the task, or this trigger was reassigned to another triggerer."""
        if self.cancel_on_kill:
            await self._shielded_kill()

    async def _cancel_if_killed(self) -> None:
        """Airflow < 3.3 (no ``on_kill``): the wait was cancelled, by a user action or a triggerer stop alike."""
        if TRIGGER_ON_KILL or not self.cancel_on_kill or self.task_instance is None:
            return
        await self._shielded_kill()

    async def _shielded_kill(self) -> None:
        """Run the kill rule in a task of its own that a further cancel cannot interrupt.

        Airflow's trigger runner re-sends its cancel on every loop (about once a second) while a
        cancelled trigger has not finished, also while ``on_kill`` runs, and swallows the
        ``CancelledError`` that this raises there: without the shield, a state read slower than one
        loop (several kills at once, a busy supervisor) ends the kill before it requests the cancel.
        """
        kill = asyncio.get_running_loop().create_task(self._cancel_if_stopped_for_good())
        _KILLS.add(kill)
        kill.add_done_callback(_KILLS.discard)
        await asyncio.shield(kill)

    async def _cancel_if_stopped_for_good(self) -> None:
        """Cancel the job only if no try of the task instance follows it (see the module docstring)."""
        left = self._seconds_left()
        if left is not None and left <= 0:
            await self._cancel(await self.hook(), "deadline passed")
            return
        state = UNKNOWN if self.task_instance is None else await self._read_task_state()
        if not may_cancel(state, reattach_on_clear=self.reattach_on_clear, retry_left=None, trigger=True):
            self.log.info("Trigger stopped (%s): job %s left running for the try that follows it", why(state), self.ref)
            return
        await self._cancel(await self.hook(), why(state))

    async def _read_task_state(self) -> str | None:
        """The task instance's state, retried with backoff (logged) until read or STATE_READ_BUDGET_S passed.

        Not retried once the triggerer's supervisor channel is closed (a 3.0-3.2 triggerer stopping cancels
        its triggers after closing it): no read can succeed, and retrying would keep the stopping runner
        process alive until its supervisor SIGKILLs it.
        """
        give_up_at = time.monotonic() + STATE_READ_BUDGET_S
        delays = backoff_delays(initial=1.0, maximum=STATE_READ_MAX_BACKOFF_S)
        for attempt in itertools.count(1):
            timeout = max(0.1, min(STATE_READ_TIMEOUT_S, give_up_at - time.monotonic()))
            try:
                return await asyncio.wait_for(task_instance_state(self.task_instance), timeout)
            except SupervisorChannelClosed as exc:
                self.log.warning("Cannot read the task's state (%s); not retried", exc)
                return UNKNOWN
            except Exception as exc:
                reason = f"no answer in {timeout:.0f} s" if isinstance(exc, TimeoutError) else f"{exc!r}"
                delay = next(delays)
                if time.monotonic() + delay >= give_up_at:
                    self.log.warning("Cannot read the task's state (%s; attempt %d); giving up after %.0f s",
                                     reason, attempt, STATE_READ_BUDGET_S)
                    return UNKNOWN
                self.log.warning("Cannot read the task's state (%s; attempt %d); retrying in %.1f s",
                                 reason, attempt, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")


def job_ref_of(event: dict) -> JobRef:
    return parse_job_ref(event["job"], field="event.job")
