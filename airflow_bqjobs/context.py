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

from typing import Any, Mapping

from airflow_bqjobs.core.job_id import RunIdentity


def rerun_key(context: Mapping[str, Any]) -> str | None:
    """``None`` for a never-cleared task instance, so turning ``reattach_on_clear`` on keeps its ID.

    The ``0.`` prefix keeps the IDs that a task-only clear (run not reset) derived before this key
    stopped reading ``dag_run.clear_number``.
    """
    tries_before_clear = tries_before_latest_clear(context)
    return None if not tries_before_clear else f"0.{tries_before_clear}"


def tries_before_latest_clear(context: Mapping[str, Any]) -> int:
    """How many tries this task instance made before its latest clear (0: never cleared)."""
    ti = context["ti"]
    retries = getattr(context.get("task") or getattr(ti, "task", None), "retries", 0) or 0
    return max(0, (getattr(ti, "max_tries", 0) or 0) - retries)


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
