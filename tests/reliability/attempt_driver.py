"""Runs the real operator lifecycle the way Airflow's task runner, triggerer and scheduler do.

One *attempt* (try) is: build the context, render templates, ``execute``; on ``TaskDeferred`` store the
trigger as the runner does (``serialize()`` through serde), rebuild it from the classpath and kwargs as
the triggerer does and run it to its first event, then resume ``execute_complete`` on a fresh operator
(a new worker process) with the event round-tripped through serde; push ``return_value``.

A *task run* is the scheduler's retry loop around attempts: any failure or kill with
``try_number <= max_tries`` schedules the next try (``try_number + 1``, ``max_tries`` unchanged), and
each new try starts with the task instance's XComs cleared. A *zombie* try is one whose worker lost its
heartbeat: Airflow schedules the next try at once while the old worker keeps running concurrently.

Issue 7 events: the driver keeps each task instance's state as Airflow's metadata DB would
(:data:`TASK_STATES`: running, deferred, up_for_retry, success, failed) for the provider's kill rule
to read (:func:`patch_task_state_reads`); a zombie try's worker may get ``on_kill`` while it waits
(the supervisor's SIGTERM), a trigger may be taken over by another triggerer (3.3 calls the old
trigger's ``on_kill``), and another task of the run may be cleared before a try (its context then
carries the run's bumped ``clear_number``).

A zombie try that reaches ``defer`` is refused, as Airflow 3's execution API refuses it (the try's task
instance ID is gone with the new try: 404; or its state is no longer ``running``: 409). No trigger of
a stale try ever runs; the supervisor SIGTERMs the stale process (``on_kill``). (Airflow 2.11's local
task job kills a try whose task instance moved on from its heartbeat; a stale try that defers inside that
window is an Airflow 2 race this driver does not model.)
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Collection, Mapping

from tests.compat import TaskDeferred, as_task_runner, deserialize, import_string, serialize
from tests.reliability.crash_points import (
    AttemptKilled,
    Point,
    Probe,
    TriggererLost,
    TriggererTakenOver,
    instrument_hook,
)
from tests.reliability.task_context import TaskInstanceKey, XComStore, build_context

SUCCESS, FAILED, KILLED = "success", "failed", "killed"
REFUSED = "refused"  # a zombie try's deferral, refused by Airflow (the task instance moved on)
# Each task instance's current state, as the metadata DB holds it (zombie tries do not write it).
TASK_STATES: dict[TaskInstanceKey, str] = {}


def task_state(ti) -> str | None:
    """What Airflow answers when asked for ``ti``'s current state (dag_id, task_id, run_id, map_index)."""
    map_index = -1 if ti.map_index is None else ti.map_index
    return TASK_STATES.get(TaskInstanceKey(ti.dag_id, ti.task_id, ti.run_id, map_index))


def patch_task_state_reads(monkeypatch) -> None:
    """Make the provider's state reads (worker on_kill, trigger kill rule) ask :data:`TASK_STATES`."""
    from airflow_bqjobs.operators import _waiting
    from airflow_bqjobs.triggers import job as trigger_module

    async def task_instance_state(ti):
        return task_state(ti)

    monkeypatch.setattr(_waiting, "current_task_state_within", lambda ti, timeout: task_state(ti), raising=False)
    monkeypatch.setattr(trigger_module, "task_instance_state", task_instance_state)


class TriggerTimedOut(Exception):
    """The trigger gave no event in time (Airflow fails the task with a deferral timeout)."""


@dataclass(frozen=True)
class TaskInstanceSpec:
    """One task instance and how to build its operator (a fresh instance per process, as in Airflow)."""

    key: TaskInstanceKey
    make_operator: Callable[[], Any]
    clear_number: int = 0


@dataclass
class Attempt:
    try_number: int
    outcome: str  # SUCCESS, FAILED, KILLED, or REFUSED (a zombie's deferral)
    killed_at: Point | None = None
    error: BaseException | None = None
    result: Any = None
    deferrals: int = 0
    triggerer_restarts: int = 0
    triggerer_takeovers: int = 0
    reached: list[Point] = field(default_factory=list)
    zombie: bool = False
    trigger_kwargs: list[Any] = field(default_factory=list)  # as stored for the triggerer (serde-encoded)


@dataclass
class TaskRun:
    key: TaskInstanceKey
    state: str  # SUCCESS or FAILED
    attempts: list[Attempt]
    result: Any
    xcom: dict[str, Any]
    finished_at: float  # epoch seconds when the last try (zombies included) was over

    @property
    def final(self) -> Attempt:
        return [a for a in self.attempts if not a.zombie][-1]


@dataclass(frozen=True)
class _Deferral:
    classpath: str
    trigger_kwargs: Any  # serde-encoded, as stored in the trigger table
    method_name: str
    next_kwargs: Any


def _execute(spec: TaskInstanceSpec, try_number: int, xcom: XComStore, probe: Probe,
             resume: _Deferral | None = None, event: Any = None) -> Any:
    """One worker process's part of a try: ``execute``, or ``execute_complete`` after a deferral."""
    operator = spec.make_operator()
    real_make_hook = operator.make_hook
    operator.make_hook = lambda context=None: instrument_hook(
        real_make_hook(context), probe, waiting=lambda: getattr(operator, "_waiting_on", None) is not None)
    if probe.on_kill_while_waiting:  # the supervisor SIGTERMs this (zombie) try while it waits
        probe.actions.setdefault(Point.WHILE_WAITING, lambda job: operator.on_kill())
    context = build_context(spec.key, operator, try_number=try_number, max_tries=operator.retries or 0,
                            clear_number=spec.clear_number, xcom=xcom, probe=probe)
    operator.render_template_fields(context)
    try:
        if resume is None:
            return as_task_runner(operator, lambda: operator.execute(context))
        next_kwargs = deserialize(resume.next_kwargs)
        next_kwargs["event"] = event
        return as_task_runner(
            operator, lambda: operator.resume_execution(resume.method_name, next_kwargs, context))
    except TaskDeferred as deferred:
        classpath, trigger_kwargs = deferred.trigger.serialize()
        return _Deferral(classpath, serialize(trigger_kwargs), deferred.method_name,
                         serialize(deferred.kwargs or {}))


def run_trigger(deferral: _Deferral, probe: Probe, timeout: float, task_instance: Any = None) -> Any:
    """The triggerer: rebuild the trigger from its stored kwargs, run it to its first event.

    If the triggerer dies mid-wait (:class:`TriggererLost`), another one rebuilds the trigger from the
    same stored kwargs and starts over; if another triggerer takes it over (:class:`TriggererTakenOver`),
    the old one's ``on_kill`` runs first, as Airflow 3.3 calls it. Returns the event payload as the
    resumed task receives it.
    """
    trigger_class = import_string(deferral.classpath)
    while True:
        trigger = trigger_class(**deserialize(deferral.trigger_kwargs))
        trigger.task_instance = task_instance
        try:
            payload = asyncio.run(_first_event(trigger, probe, timeout))
        except TriggererTakenOver:
            asyncio.run(trigger.on_kill())
            continue
        except TriggererLost:
            continue
        return deserialize(serialize(payload))


def first_event_of(trigger, *, timeout: float = 60.0) -> Any:
    """Store ``trigger`` as the task runner does and run it as the triggerer does: its first event."""
    classpath, kwargs = trigger.serialize()
    return run_trigger(_Deferral(classpath, serialize(kwargs), "execute_complete", {}), Probe(), timeout)


async def _first_event(trigger, probe: Probe, timeout: float) -> Any:
    """One triggerer process: its own shared poller, session and credentials (reset here)."""
    from airflow_bqjobs.hooks import shared

    with _TRIGGERERS_LOCK:  # the shared clients are per process: reset only when no other trigger runs
        global _TRIGGERERS
        if _TRIGGERERS == 0:
            shared.reset()
        _TRIGGERERS += 1
    try:
        return await _first_event_of_one_triggerer(trigger, probe, timeout)
    finally:
        with _TRIGGERERS_LOCK:
            _TRIGGERERS -= 1


_TRIGGERERS = 0  # triggers running now (the chaos run runs many, in threads of one process)
_TRIGGERERS_LOCK = threading.Lock()


async def _first_event_of_one_triggerer(trigger, probe: Probe, timeout: float) -> Any:
    loop = asyncio.get_running_loop()
    died = loop.create_future()

    def on_death(exc: BaseException) -> None:  # called from the poller's thread
        loop.call_soon_threadsafe(lambda: died.done() or died.set_exception(exc))

    # The shared hook is one object per process: this trigger's probe wraps a copy of its own (the
    # shared client under it stays shared), so that no other trigger's calls reach this probe.
    hook = trigger._hook = copy.copy(await trigger.hook())
    instrument_hook(hook, probe, waiting=lambda: True, in_trigger=True, job_id=trigger.ref.job_id,
                    on_death=on_death)

    async def first():
        async for event in trigger.run():
            return event.payload
        raise TriggerTimedOut(f"trigger {trigger!r} ended without an event")

    task = asyncio.ensure_future(first())
    done, _ = await asyncio.wait({task, died}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if died.done():  # killed, or the triggerer lost, while the trigger waited: it is cancelled
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise died.exception()
    died.cancel()
    if not done:
        task.cancel()
        raise TriggerTimedOut(f"no event from {trigger!r} within {timeout} s")
    return task.result()


def run_attempt(spec: TaskInstanceSpec, try_number: int, xcom: XComStore, probe: Probe | None = None, *,
                trigger_timeout: float = 60.0, zombie: bool = False) -> Attempt:
    """One try, from the worker picking it up to success, failure or death."""
    probe = probe or Probe()
    attempt = Attempt(try_number, SUCCESS, zombie=zombie)
    try:
        outcome = _execute(spec, try_number, xcom, probe)
        while isinstance(outcome, _Deferral):
            if zombie:
                _refuse_stale_deferral(probe, attempt)
                return attempt
            attempt.deferrals += 1
            attempt.trigger_kwargs.append(outcome.trigger_kwargs)
            if not zombie:
                TASK_STATES[spec.key] = "deferred"
            event = run_trigger(outcome, probe, trigger_timeout, task_instance=spec.key)
            if not zombie:
                TASK_STATES[spec.key] = "running"  # resumed on a worker
            probe.reach(Point.AFTER_TRIGGER_FIRED, event)
            outcome = _execute(spec, try_number, xcom, probe, resume=outcome, event=event)
        if outcome is not None:
            xcom.push("return_value", outcome)
        attempt.result = outcome
    except AttemptKilled as killed:
        attempt.outcome, attempt.killed_at, attempt.error = KILLED, killed.point, killed
    except Exception as exc:
        attempt.outcome, attempt.error = FAILED, exc
    attempt.reached = list(probe.reached)
    attempt.triggerer_restarts = probe.triggerer_restarts
    attempt.triggerer_takeovers = probe.takeovers
    return attempt


def _refuse_stale_deferral(probe: Probe, attempt: Attempt) -> None:
    """Airflow refuses a zombie try's ``defer`` (404/409) and its supervisor SIGTERMs the process."""
    on_kill = probe.actions.pop(Point.WHILE_WAITING, None) if probe.on_kill_while_waiting else None
    if on_kill is not None:
        on_kill(None)
    attempt.outcome = REFUSED
    attempt.error = RuntimeError("deferral refused: the task instance moved on to a newer try")
    attempt.reached = list(probe.reached)


def run_task_instance(spec: TaskInstanceSpec, *, probes: Mapping[int, Probe] | None = None,
                      zombies: Collection[int] = (), zombie_head_start: float = 0.0,
                      between_attempts: Callable[[Attempt], None] | None = None,
                      trigger_timeout: float = 60.0, other_task_clears: Collection[int] = ()) -> TaskRun:
    """Airflow's retry loop for one task instance.

    ``probes[n]``: the probe of try ``n`` (kills, user actions). ``zombies``: tries whose worker is
    declared lost as soon as it starts; it keeps running (with its own, discarded XComs: Airflow
    rejects a stale try's writes) while try ``n + 1`` runs. ``between_attempts`` runs after every
    try that did not succeed, before the next one (tests move the fake's clock there).
    ``other_task_clears``: tries before which another task of the run was cleared (Airflow bumps the
    run's ``clear_number``, not this task instance's ``max_tries``).
    """
    probes = probes or {}
    max_tries = spec.make_operator().retries or 0
    xcom = XComStore()
    attempts: list[Attempt] = []
    zombie_threads: list[threading.Thread] = []
    try_number = 1
    while True:
        xcom.clear()  # a new try starts without the XComs of earlier tries
        probe = probes.get(try_number)
        clears = sum(1 for n in other_task_clears if n <= try_number)
        try_spec = replace(spec, clear_number=spec.clear_number + clears) if clears else spec
        TASK_STATES[spec.key] = "running"
        if try_number in zombies:
            zombie_threads.append(_start_zombie(try_spec, try_number, probe, attempts, trigger_timeout))
            time.sleep(zombie_head_start)
            attempt = Attempt(try_number, FAILED, error=RuntimeError("worker lost its heartbeat (zombie)"))
        else:
            attempt = run_attempt(try_spec, try_number, xcom, probe, trigger_timeout=trigger_timeout)
            attempts.append(attempt)
        if attempt.outcome == SUCCESS or try_number > max_tries:
            TASK_STATES[spec.key] = SUCCESS if attempt.outcome == SUCCESS else FAILED
            break
        TASK_STATES[spec.key] = "up_for_retry"
        if between_attempts is not None:
            between_attempts(attempt)
        try_number += 1
    for thread in zombie_threads:
        thread.join(trigger_timeout * 2)
    state = SUCCESS if attempt.outcome == SUCCESS else FAILED
    return TaskRun(spec.key, state, attempts, attempt.result, xcom.snapshot(), time.time())


def _start_zombie(spec: TaskInstanceSpec, try_number: int, probe: Probe | None, attempts: list[Attempt],
                  trigger_timeout: float) -> threading.Thread:
    def run() -> None:
        attempts.append(run_attempt(spec, try_number, XComStore(), probe, trigger_timeout=trigger_timeout,
                                    zombie=True))

    thread = threading.Thread(target=run, name=f"zombie {spec.key} try {try_number}", daemon=True)
    thread.start()
    return thread
