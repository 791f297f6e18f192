"""The context Airflow's task runner hands an attempt: a task instance, its run, and its XComs.

Only what a task runner provides and the provider reads. XComs are stored as JSON (as the metadata DB
stores them), so a value that would not survive XCom fails here too. Airflow clears a task instance's
XComs when a new try starts, not when a deferred try resumes: :class:`XComStore` is cleared by the
driver on the same occasions.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

from airflow_bqjobs.operators._waiting import SUMMARY_XCOM_KEY
from tests.reliability.crash_points import Point, Probe


class XComStore:
    """One task instance's XComs (shared by its tries, like the metadata DB's xcom table)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, Any] = {}

    def push(self, key: str, value: Any) -> None:
        text = json.dumps(value)  # what does not serialise cannot be an XCom
        with self._lock:
            self._values[key] = json.loads(text)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self._values))


@dataclass(frozen=True)
class TaskInstanceKey:
    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1

    def __str__(self) -> str:
        suffix = f"[{self.map_index}]" if self.map_index >= 0 else ""
        return f"{self.dag_id}.{self.task_id}{suffix} @ {self.run_id}"


@dataclass
class AttemptTaskInstance:
    """``context["ti"]`` for one try; ``xcom_push`` lets the probe see the moments around the push."""

    key: TaskInstanceKey
    task: Any
    try_number: int
    max_tries: int
    xcom: XComStore
    probe: Probe
    start_date: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    dag_id = property(lambda self: self.key.dag_id)
    task_id = property(lambda self: self.key.task_id)
    run_id = property(lambda self: self.key.run_id)
    map_index = property(lambda self: self.key.map_index)

    def xcom_push(self, key: str, value: Any) -> None:
        if key == SUMMARY_XCOM_KEY:
            self.probe.reach(Point.WHILE_RESUMING)
        self.xcom.push(key, value)
        if key == SUMMARY_XCOM_KEY:
            self.probe.reach(Point.AFTER_XCOM_PUSH)


def build_context(key: TaskInstanceKey, task: Any, *, try_number: int, max_tries: int, clear_number: int,
                  xcom: XComStore, probe: Probe) -> dict[str, Any]:
    ti = AttemptTaskInstance(key, task, try_number, max_tries, xcom, probe)
    dag_run = SimpleNamespace(dag_id=key.dag_id, run_id=key.run_id, clear_number=clear_number)
    return {"ti": ti, "task_instance": ti, "task": task, "run_id": key.run_id, "dag_run": dag_run,
            "map_index": key.map_index}
