"""What the Airflow context says about "which job is this": run identity and the clear signal.

Retry vs clear. A retry must find the same job; a deliberate clear of *this* task instance is a
request to run again. The one counter Airflow moves on the cleared task instances only, and never on
a retry, is ``max_tries``: ``clear_task_instances`` sets ``ti.max_tries = ti.try_number +
task.retries`` on every task instance it clears that is not running (2.11, 3.0-3.3 alike), so
``max_tries - retries`` is the number of tries made before this task instance's latest clear
(Airflow's own "first try of this cycle" arithmetic). Retries, heartbeat timeouts and clears of
other task instances leave it alone.

``dag_run.clear_number`` is *not* used: Airflow 3 increments it on every clear that resets the run,
whichever task instances were cleared ("clear failed only", one map index, another task), so a task
instance waiting for its retry would derive a new ID and insert a second job.

A running task instance that is cleared is marked ``restarting`` without touching ``max_tries``: its
next try keeps the ID. The clear reaches the running try as a kill (``on_kill``), which cancels its
job unless ``reattach_on_clear`` (see :mod:`airflow_bqjobs.core.kill`), so the next try runs the next
generation of the ID; with ``cancel_on_kill=False`` it reattaches to the job still running.

Limit: editing a task's ``retries`` while a run is retrying also moves ``max_tries - retries`` and
counts as a clear. ``reattach_on_clear=True`` drops the signal: every attempt of the task instance,
cleared or not, follows the same job.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta
from typing import Any, Mapping

from airflow_bqjobs.core.job_id import RunIdentity

# Clock skew allowed between Airflow and BigQuery when bounding a jobs.list by creation time.
CLOCK_SKEW = timedelta(minutes=15)


def tries_before_clear(context: Mapping[str, Any]) -> int:
    """Tries this task instance made before its latest clear (0 if never cleared)."""
    ti = context["ti"]
    retries = getattr(context.get("task") or getattr(ti, "task", None), "retries", 0) or 0
    return max(0, (getattr(ti, "max_tries", 0) or 0) - retries)


def tries_this_cycle(context: Mapping[str, Any], *, reattach_on_clear: bool = False) -> int:
    """Tries made under the current job ID, this one included (>= 1).

    Each try inserts at most one generation of the ID, so this bounds how many can exist (see
    :mod:`airflow_bqjobs.core.attach`). A clear starts a new ID, hence a new count, unless
    ``reattach_on_clear``: then every try of the task instance shares the ID. Overestimating costs
    reads only; the walk probes upward when it underestimates.
    """
    try_number = int(getattr(context["ti"], "try_number", 1) or 1)
    before = 0 if reattach_on_clear else tries_before_clear(context)
    return max(1, try_number - before)


def run_created_not_before(context: Mapping[str, Any]) -> datetime | None:
    """A time no job of this DAG run can predate (minus clock skew): bounds a jobs.list by creation time.

    The earliest of the run's ``run_after`` (Airflow 3), logical date and data interval start: a task
    never runs before its DAG run exists, and clears do not move these. ``None`` if none is known.
    """
    dag_run = context.get("dag_run")
    candidates = [
        getattr(dag_run, "run_after", None),
        getattr(dag_run, "logical_date", None) or context.get("logical_date"),
        getattr(dag_run, "data_interval_start", None),
    ]
    known = [c for c in candidates if isinstance(c, datetime)]
    return min(known) - CLOCK_SKEW if known else None


def is_tasks_test(context: Mapping[str, Any] | None = None) -> bool:
    """Whether this task runs under ``airflow tasks test``.

    3.3's ``task_test`` exports ``AIRFLOW_TEST_MODE=True`` (nothing else does). 2.11 to 3.2 build that
    variable but export it only along with ``--env-vars``. 2.11 runs the task with ``test_mode=True``,
    which 2.x puts in the context (``context["test_mode"]``; False under ``dag.test()`` and in a worker);
    3.0 to 3.2 run it in ``task_test``'s own thread (``_run_task``, as ``dag.test()`` does, but called
    from ``task_test``), so that frame is on the stack.
    """
    if os.environ.get("AIRFLOW_TEST_MODE", "").strip().lower() == "true":
        return True
    if context is not None and context.get("test_mode") is True:
        return True
    return _called_from_airflows_task_test()


_TASK_TEST = ("airflow.cli.commands.task_command", "task_test")


def _called_from_airflows_task_test() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == _TASK_TEST[1] and frame.f_globals.get("__name__") == _TASK_TEST[0]:
            return True
        frame = frame.f_back
    return False


def rerun_key(context: Mapping[str, Any]) -> str | None:
    """``None`` for a never-cleared task instance, so turning ``reattach_on_clear`` on keeps its ID.

    The ``0.`` prefix keeps the IDs that a task-only clear (run not reset) derived before this key
    stopped reading ``dag_run.clear_number``.
    """
    before = tries_before_clear(context)
    return None if not before else f"0.{before}"


def run_identity(context: Mapping[str, Any], *, reattach_on_clear: bool = False) -> RunIdentity:
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    return RunIdentity(
        dag_id=ti.dag_id,
        task_id=ti.task_id,
        run_id=context["run_id"],
        map_index=-1 if map_index is None else int(map_index),
        rerun_key=None if reattach_on_clear else rerun_key(context),
    )
