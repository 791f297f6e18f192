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

import os
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


def is_tasks_test() -> bool:
    """Whether this task runs under ``airflow tasks test`` (which sets ``AIRFLOW_TEST_MODE=True``; nothing else does)."""
    return os.environ.get("AIRFLOW_TEST_MODE", "").strip().lower() == "true"


def rerun_key(context: Mapping[str, Any]) -> str | None:
    """``None`` for a never-cleared task instance, so turning ``reattach_on_clear`` on keeps its ID."""
    dag_run = context.get("dag_run")
    clear_number = getattr(dag_run, "clear_number", 0) or 0
    tries_before_clear_ = tries_before_clear(context)
    if not clear_number and not tries_before_clear_:
        return None
    return f"{clear_number}.{tries_before_clear_}"


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
