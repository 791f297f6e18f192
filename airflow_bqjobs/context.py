"""What the Airflow context says about "which job is this": run identity and the clear signal.

Retry vs clear. A retry must find the same job; a deliberate clear of the task or of its DAG run is
a request to run again. Airflow marks a clear in two counters that retries never touch:

* ``dag_run.clear_number`` grows each time the whole DAG run is cleared;
* on every clear (task or run), Airflow sets ``ti.max_tries = ti.try_number + task.retries``, so
  ``max_tries - retries`` is the number of tries made before the latest clear (Airflow's own
  "first try of this cycle" arithmetic). Retries leave ``max_tries`` alone.

Both go into the job ID's hash. Limit: editing a task's ``retries`` while a run is retrying also
moves ``max_tries - retries`` and counts as a clear. ``reattach_on_clear=True`` drops the signal:
every attempt of the task instance, cleared or not, follows the same job.
"""

from __future__ import annotations

from typing import Any, Mapping

from airflow_bqjobs.core.job_id import RunIdentity


def rerun_key(context: Mapping[str, Any]) -> str | None:
    """``None`` for a never-cleared task instance, so turning ``reattach_on_clear`` on keeps its ID."""
    ti = context["ti"]
    dag_run = context.get("dag_run")
    clear_number = getattr(dag_run, "clear_number", 0) or 0
    retries = getattr(context.get("task") or getattr(ti, "task", None), "retries", 0) or 0
    tries_before_clear = max(0, (getattr(ti, "max_tries", 0) or 0) - retries)
    if not clear_number and not tries_before_clear:
        return None
    return f"{clear_number}.{tries_before_clear}"


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
