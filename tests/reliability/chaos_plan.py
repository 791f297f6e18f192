"""The seeded plan of a chaos run: which task instances exist and what goes wrong for each.

Everything random about the scenarios comes from one ``random.Random(seed)``, so a seed names a plan.
(Which API call meets an injected fault also follows the fake's seeded RNG, but calls from
concurrent threads interleave differently from run to run.)
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from tests.reliability.attempt_driver import TaskInstanceSpec
from tests.reliability.crash_points import Point, points_for
from tests.reliability.scenarios import query_config, submit_task

# Error reasons of a job that fails once (its retry runs generation _1): backend trouble, or a user
# cancelling the job.
FAILURE_REASONS = ("jobBackendError", "jobInternalError", "stopped")
RETRIES = 7


@dataclass(frozen=True)
class ChaosSettings:
    task_runs: int = 520
    run_ids: tuple[str, ...] = tuple(f"scheduled__2026-03-{day:02d}T00:00:00+00:00" for day in range(1, 5))
    deferrable_share: float = 0.5
    mapped_share: float = 0.5  # of tasks; a mapped task has 2-6 map indexes
    failure_share: float = 0.2  # task instances whose first job fails once
    kill_first_try_share: float = 0.45
    kill_second_try_share: float = 0.15
    zombie_share: float = 0.08  # the first try's worker is declared lost and keeps running beside try 2
    triggerer_restart_share: float = 0.1  # of deferrable task instances
    # Issue 7 (drawn from their own RNG, so the events above stay as a seed planned them):
    other_task_clear_share: float = 0.15  # another task of the run is cleared before try 2 (clear_number + 1)
    zombie_on_kill_share: float = 0.6  # of zombie tries: the supervisor SIGTERMs it (on_kill) while it waits
    triggerer_takeover_share: float = 0.12  # of deferrable task instances: another triggerer takes over
    request_timeout: float = 0.5
    poll_interval: float = 0.05


@dataclass
class TaskPlan:
    spec: TaskInstanceSpec
    deferrable: bool
    failure: str | None = None
    kills: dict[int, Point] = field(default_factory=dict)
    zombie_tries: tuple[int, ...] = ()
    triggerer_restart_tries: tuple[int, ...] = ()
    other_task_clears: tuple[int, ...] = ()  # tries before which another task of the run was cleared
    zombie_on_kill: bool = False
    triggerer_takeover_tries: tuple[int, ...] = ()

    @property
    def failed_generations(self) -> int:
        return 1 if self.failure else 0


def make_plan(seed: int, settings: ChaosSettings = ChaosSettings()) -> list[TaskPlan]:
    rng = random.Random(seed)
    plans: list[TaskPlan] = []
    task_number = 0
    while len(plans) < settings.task_runs:
        run_id = settings.run_ids[task_number % len(settings.run_ids)]
        task_id = f"task_{task_number // len(settings.run_ids):03d}"
        task_number += 1
        deferrable = rng.random() < settings.deferrable_share
        if rng.random() < settings.mapped_share:
            same_config = rng.random() < 0.5  # then only the map index tells the jobs apart
            for map_index in range(rng.randint(2, 6)):
                sql = "SELECT 'mapped'" if same_config else f"SELECT {map_index}"
                plans.append(_plan(rng, settings, task_id, run_id, map_index, sql, deferrable))
        else:
            plans.append(_plan(rng, settings, task_id, run_id, -1, f"SELECT '{task_id}'", deferrable))
    plans = plans[: settings.task_runs]
    _plan_signals(random.Random(seed * 7919 + 7), settings, plans)
    return plans


def _plan_signals(rng: random.Random, settings: ChaosSettings, plans: list[TaskPlan]) -> None:
    """Clears of other tasks, zombie tries killed through on_kill, triggerer takeovers (issue 7)."""
    for plan in plans:
        if rng.random() < settings.other_task_clear_share:
            plan.other_task_clears = (2,)
        if plan.zombie_tries and rng.random() < settings.zombie_on_kill_share:
            plan.zombie_on_kill = True
        if plan.deferrable and rng.random() < settings.triggerer_takeover_share:
            plan.triggerer_takeover_tries = (rng.randint(1, 2),)


def _plan(rng: random.Random, settings: ChaosSettings, task_id: str, run_id: str, map_index: int, sql: str,
          deferrable: bool) -> TaskPlan:
    spec = submit_task(task_id, deferrable=deferrable, run_id=run_id, map_index=map_index,
                       configuration=query_config(sql), retries=RETRIES, poll_interval=settings.poll_interval,
                       request_timeout=settings.request_timeout)
    plan = TaskPlan(spec, deferrable)
    if rng.random() < settings.failure_share:
        plan.failure = rng.choice(FAILURE_REASONS)
    points = points_for(deferrable)
    if rng.random() < settings.kill_first_try_share:
        plan.kills[1] = rng.choice(points)
    if rng.random() < settings.kill_second_try_share:
        plan.kills[2] = rng.choice(points)
    if rng.random() < settings.zombie_share:
        plan.zombie_tries = (1,)
    if deferrable and rng.random() < settings.triggerer_restart_share:
        plan.triggerer_restart_tries = (rng.randint(1, 2),)
    return plan
