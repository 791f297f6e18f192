"""A task-instance context as Airflow's task runner hands it to ``execute``, for operator-level tests.

Only what the provider reads: ti (ids, map index, try numbers, start date, xcom_push), task, run_id,
dag_run.clear_number. Attempts of one task instance share the XCom store so results can be compared.
"""

from __future__ import annotations

import asyncio
import importlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any


@dataclass
class FakeTaskInstance:
    dag_id: str
    task_id: str
    task: Any
    map_index: int = -1
    try_number: int = 1
    max_tries: int = 0
    start_date: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    xcom: dict = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def make_context(task, *, run_id="manual__2026-01-01T00:00:00+00:00", try_number=1, max_tries=None,
                 clear_number=0, map_index=-1, xcom=None) -> dict:
    """Context for one attempt; a retry is the same call with ``try_number + 1``."""
    retries = task.retries or 0
    ti = FakeTaskInstance(
        dag_id=task.dag_id if task.has_dag() else "test_dag",
        task_id=task.task_id,
        task=task,
        map_index=map_index,
        try_number=try_number,
        max_tries=retries if max_tries is None else max_tries,
        xcom=xcom if xcom is not None else {},
    )
    return {"ti": ti, "task": task, "run_id": run_id, "dag_run": SimpleNamespace(clear_number=clear_number)}


def rebuild_trigger(trigger):
    """What the triggerer does: import the classpath and build the trigger from its serialised kwargs."""
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)(**kwargs)


def first_event(trigger, timeout: float = 30.0):
    """Run the trigger like the triggerer does and return the payload of its first event."""

    async def run():
        async for event in trigger.run():
            return event.payload
        raise AssertionError("trigger ended without an event")

    return asyncio.run(asyncio.wait_for(run(), timeout))
