"""Where an attempt can die, and the probes that kill it there.

A crash is modelled as :class:`AttemptKilled`, a ``BaseException``: like SIGKILL it cannot be caught
by the library's ``except Exception`` blocks, and it leaves whatever the attempt did so far (an
inserted job, a pushed XCom) in place. Probes wrap the *instances* an attempt uses (its hook, its
task instance's ``xcom_push``), so the real operator, hook and trigger code runs unchanged and
concurrent attempts never see each other's probes.
"""

from __future__ import annotations

import enum
import threading
from typing import Any, Callable

from airflow_bqjobs.core.decision import job_state


class Point(str, enum.Enum):
    """A moment in one attempt's life, in the order an attempt reaches them."""

    BEFORE_INSERT = "before_insert"  # the ID is free; jobs.insert not sent yet
    AFTER_INSERT = "after_insert"  # jobs.insert applied and answered; not yet waiting (sync) / deferred
    WHILE_WAITING = "while_waiting"  # job seen unfinished: sync poll loop, or the trigger mid-wait
    AFTER_TRIGGER_FIRED = "after_trigger_fired"  # the trigger's event exists; the task has not resumed
    WHILE_RESUMING = "while_resuming"  # the job was re-read as DONE; summary XCom not pushed yet
    AFTER_XCOM_PUSH = "after_xcom_push"  # summary pushed; the task has not returned yet

    def __str__(self) -> str:
        return self.value


SYNC_POINTS = (Point.BEFORE_INSERT, Point.AFTER_INSERT, Point.WHILE_WAITING, Point.WHILE_RESUMING,
               Point.AFTER_XCOM_PUSH)
DEFERRABLE_POINTS = tuple(Point)
# Points at which the job is still unfinished when the attempt dies.
POINTS_BEFORE_JOB_DONE = (Point.BEFORE_INSERT, Point.AFTER_INSERT, Point.WHILE_WAITING)


def points_for(deferrable: bool) -> tuple[Point, ...]:
    return DEFERRABLE_POINTS if deferrable else SYNC_POINTS


class AttemptKilled(BaseException):
    """The worker running this attempt died at ``point`` (SIGKILL, OOM, lost node)."""

    def __init__(self, point: Point):
        self.point = point
        super().__init__(f"attempt killed at {point}")


class TriggererLost(BaseException):
    """The triggerer running this attempt's trigger died; another one rebuilds the trigger."""


class TriggererTakenOver(TriggererLost):
    """The trigger was reassigned to another triggerer; Airflow 3.3 calls the old one's ``on_kill``."""


class Probe:
    """Records the points one attempt reaches and acts at the chosen ones.

    ``kill_at``: raise :class:`AttemptKilled` the first time that point is reached.
    ``restart_triggerer``: raise :class:`TriggererLost` the first time the trigger sees the job unfinished.
    ``actions``: ``{point: callable(job_or_None)}`` run once, the first time the point is reached
    (e.g. a user cancelling the job while the task waits).
    """

    def __init__(self, kill_at: Point | None = None, *, restart_triggerer: bool = False,
                 actions: dict[Point, Callable[[Any], None]] | None = None, takeover: bool = False,
                 on_kill_while_waiting: bool = False):
        self.kill_at = kill_at
        self.restart_triggerer = restart_triggerer
        # Issue 7: ``takeover``: another triggerer takes the trigger over the first time it sees the job
        # unfinished (Airflow 3.3 calls the old trigger's on_kill); ``on_kill_while_waiting``: the
        # worker's on_kill is called while it waits (the supervisor's SIGTERM to a zombie try).
        self.takeover = takeover
        self.on_kill_while_waiting = on_kill_while_waiting
        self.takeovers = 0
        self.actions = dict(actions or {})
        self.reached: list[Point] = []
        self.killed_at: Point | None = None
        self.triggerer_restarts = 0
        self._lock = threading.Lock()

    def reach(self, point: Point, job: Any = None) -> None:
        with self._lock:
            self.reached.append(point)
            action = self.actions.pop(point, None)
            kill = point is self.kill_at and self.killed_at is None
            if kill:
                self.killed_at = point
        if action is not None:
            action(job)
        if kill:
            raise AttemptKilled(point)

    def trigger_saw_unfinished_job(self, job: Any) -> None:
        with self._lock:
            restart = self.restart_triggerer and self.triggerer_restarts == 0
            if restart:
                self.triggerer_restarts += 1
            takeover = self.takeover and self.takeovers == 0 and not restart
            if takeover:
                self.takeovers += 1
        if restart:
            raise TriggererLost("triggerer lost while the job was unfinished")
        if takeover:
            raise TriggererTakenOver("another triggerer took the trigger over")
        self.reach(Point.WHILE_WAITING, job)


def instrument_hook(hook, probe: Probe, *, waiting: Callable[[], bool], in_trigger: bool = False,
                    job_id: str | None = None, on_death: Callable[[BaseException], None] | None = None):
    """Wrap this hook instance's insert and get so ``probe`` sees the points around them.

    In a trigger (``in_trigger``), the job is seen unfinished by a ``jobs.get`` or by the shared poller's
    ``jobs.list`` (entries of ``job_id``). The poller calls them in its own task, so a kill or a lost
    triggerer raised by the probe there is handed to ``on_death`` (which stops the triggerer) instead.
    """
    real_insert, real_get, real_list = hook.insert_job, hook.get_job, hook.list_jobs

    def insert_job(ref, configuration, **kwargs):
        probe.reach(Point.BEFORE_INSERT)
        job = real_insert(ref, configuration, **kwargs)
        probe.reach(Point.AFTER_INSERT, job)
        return job

    def trigger_saw(job):
        if on_death is None:
            probe.trigger_saw_unfinished_job(job)
            return
        try:
            probe.trigger_saw_unfinished_job(job)
        except BaseException as exc:  # noqa: BLE001 - handed to the triggerer
            on_death(exc)

    def get_job(ref, **kwargs):
        job = real_get(ref, **kwargs)
        if job is not None and job_state(job) != "DONE" and waiting():
            if in_trigger:
                trigger_saw(job)
            else:
                probe.reach(Point.WHILE_WAITING, job)
        return job

    def list_jobs(**kwargs):
        from airflow_bqjobs.core.job_ref import JobRef

        entries = list(real_list(**kwargs))
        if in_trigger and waiting():
            for entry in entries:
                ref = entry["jobReference"]
                if ref["jobId"] == job_id and entry.get("state") != "DONE":
                    # The probe's actions want the full resource (the list's is minimal).
                    job = real_get(JobRef(ref["jobId"], ref["projectId"], ref.get("location")), retry=None)
                    if job is not None and job_state(job) != "DONE":
                        trigger_saw(job)
        return entries

    hook.insert_job = insert_job
    hook.get_job = get_job
    hook.list_jobs = list_jobs
    return hook
