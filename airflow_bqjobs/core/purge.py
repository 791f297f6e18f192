"""Which jobs belong to a DAG run: the ``airflow-dag`` / ``airflow-run`` (/ ``airflow-task``) labels.

The submit operator labels every job with sanitised DAG, task and run ids; a purge lists jobs and
matches these labels client-side (``jobs.list`` cannot filter by label). Only top-level jobs are
considered: deleting a script job deletes its children's metadata too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.core.job_listing import entry_labels, labels_match
from airflow_bqjobs.core.labels import DAG_LABEL, RUN_LABEL, TASK_LABEL, sanitize_label_value

# A run's jobs are created after its run_after; BigQuery's clock may differ from Airflow's by this much.
CLOCK_SKEW_ALLOWANCE = timedelta(minutes=10)


def run_labels(dag_id: Any, run_id: Any) -> dict[str, str]:
    """The label values the submit operator gave the jobs of this DAG run."""
    for name, value in (("purge_dag_id", dag_id), ("purge_run_id", run_id)):
        if not isinstance(value, str) or not value:
            raise InvalidJobInput(name, f"must be a non-empty string, got {value!r}")
    return {DAG_LABEL: sanitize_label_value(dag_id), RUN_LABEL: sanitize_label_value(run_id)}


def task_label_values(task_ids: Any) -> frozenset[str] | None:
    """``None`` (every task) or the sanitised ``airflow-task`` values to keep."""
    if task_ids is None:
        return None
    items = [task_ids] if isinstance(task_ids, str) else task_ids
    if not isinstance(items, Iterable) or isinstance(items, Mapping):
        raise InvalidJobInput("purge_task_ids", f"must be a task id or a list of them, got {type(task_ids).__name__}")
    items = list(items)
    if not items or not all(isinstance(t, str) and t for t in items):
        raise InvalidJobInput("purge_task_ids", f"must be non-empty task id strings, got {task_ids!r}")
    return frozenset(sanitize_label_value(t) for t in items)


def select_run_jobs(
    entries: Iterable[Mapping], labels: Mapping[str, str], tasks: frozenset[str] | None = None
) -> list[Mapping]:
    """The top-level list entries carrying the run's labels (and one of the tasks' labels, if given)."""
    return [
        entry
        for entry in entries
        if not (entry.get("statistics") or {}).get("parentJobId")
        and labels_match(entry, labels)
        and (tasks is None or entry_labels(entry).get(TASK_LABEL) in tasks)
    ]


def default_min_creation(run_after: datetime | None) -> datetime | None:
    """Lower bound for listing a run's jobs, so a purge does not page through six months of history."""
    return None if run_after is None else run_after - CLOCK_SKEW_ALLOWANCE
