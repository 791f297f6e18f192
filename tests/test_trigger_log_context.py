"""Each trigger's log lines reach its own task's log, although one shared poller task does the polling.

Airflow's triggerer routes a trigger's log lines to its task's log by the context (``contextvars``)
of the trigger's asyncio task. The shared poller (triggers/_poller.py) is one task for many
triggers, started by whichever trigger came first: its progress callbacks must run in the context
of the trigger that registered them, and its own lines in no trigger's context.
"""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from airflow_bqjobs.core.job_ref import JobRef
from airflow_bqjobs.triggers import _poller
from airflow_bqjobs.triggers import job as job_module
from airflow_bqjobs.triggers.job import BigQueryJobTrigger

QUERY = {"query": {"query": "SELECT 1", "useLegacySql": False}}
CONN = "no_such_conn"
TASK_LOG = contextvars.ContextVar("task_log", default="<no task>")  # stands in for the triggerer's routing


@pytest.fixture
def task_logs(monkeypatch):
    """(task log the line would be routed to, line) of every progress line and poller warning."""
    lines: list[tuple[str, str]] = []

    class RecordingReporter(job_module.ProgressReporter):
        def update(self, job):
            line = super().update(job)
            if line:
                lines.append((TASK_LOG.get(), line))
            return line

    def warning(msg, *args, **kwargs):
        lines.append((TASK_LOG.get(), msg % args))

    monkeypatch.setattr(job_module, "ProgressReporter", RecordingReporter)
    monkeypatch.setattr(_poller.log, "warning", warning)
    return lines


def test_progress_lines_of_each_trigger_go_to_its_own_task_log(fake_bq, hook, task_logs):
    names = ("first", "second", "third")
    for name in names:
        fake_bq.add_rule(job_id=f"^ctx_{name}$", pending_s=0, running_s=1.5)
    refs = [hook.insert_job(JobRef(f"ctx_{name}"), QUERY)["jobReference"] for name in names]

    async def trigger_in_its_task(name, ref):
        TASK_LOG.set(name)
        trigger = BigQueryJobTrigger(job=ref, gcp_conn_id=CONN, poll_interval=0.2)
        async for event in trigger.run():
            return event.payload

    async def main():
        return await asyncio.gather(*(asyncio.create_task(trigger_in_its_task(n, r)) for n, r in zip(names, refs)))

    payloads = asyncio.run(asyncio.wait_for(main(), 30))
    assert [p["status"] for p in payloads] == ["done"] * 3
    progress = [(where, line) for where, line in task_logs if line.startswith("Job ") and " RUNNING" in line]
    assert {where for where, _ in progress} == set(names), progress  # every trigger logged progress
    for where, line in progress:
        assert f"ctx_{where} " in line, f"{line!r} logged to the task log of {where!r}"


def test_the_shared_poller_logs_its_own_lines_in_no_triggers_context(fake_bq, hook, task_logs):
    fake_bq.add_rule(job_id="^ctx_owner$", pending_s=0, running_s=1.0)
    ref = hook.insert_job(JobRef("ctx_owner"), QUERY)["jobReference"]
    fake_bq.inject("503", "list", count=1)  # the poller logs its retry

    async def main():
        TASK_LOG.set("the trigger that started the poller")
        trigger = BigQueryJobTrigger(job=ref, gcp_conn_id=CONN, poll_interval=0.2)
        async for event in trigger.run():
            return event.payload

    assert asyncio.run(asyncio.wait_for(main(), 30))["status"] == "done"
    retries = [where for where, line in task_logs if line.startswith("Transient error listing jobs")]
    assert retries == ["<no task>"], task_logs
