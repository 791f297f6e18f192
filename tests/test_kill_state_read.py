"""A stopped trigger reads its task's state however long Airflow takes to answer, and then applies the kill rule.

The read goes through the triggerer's supervisor (Airflow 3) or the metadata DB (Airflow 2), and a
loaded triggerer stalls: in the Celery soak, a supervisor loop stopped for 30 s right when a user
marked a task failed, and a 10 s read timed out, so the job ran on. Reads are now retried with
backoff (logged) for ``STATE_READ_BUDGET_S``, and the kill goes on after Airflow's ``on_kill_timeout``
(it runs shielded, in a task of its own). Driven through Airflow's own ``TriggerRunner``.
"""

from __future__ import annotations

import asyncio

import pytest

from airflow_bqjobs.triggers import job as trigger_module
from tests.airflow_context import rebuild_trigger
from tests.compat import TriggerRunnerHarness, closed_triggerer_channel
from tests.test_cancel_on_kill import async_wait_until, defer, polled, submit, the_job


@pytest.fixture(autouse=True)
def long_jobs(emulator):
    emulator.set_defaults(pending_s=0, running_s=120)


async def deferred_trigger(fake_bq, monkeypatch, read_state):
    """A deferred task's trigger, running in Airflow's TriggerRunner, whose state reads ``read_state`` serves."""
    _, deferred = defer(submit())
    job_id = the_job(fake_bq)["job_id"]
    triggerer = TriggerRunnerHarness(monkeypatch)
    monkeypatch.setattr(trigger_module, "task_instance_state", read_state)
    triggerer.start(rebuild_trigger(deferred.trigger), 1)
    await async_wait_until(lambda: polled(fake_bq, job_id), what="the trigger to poll the job")
    return triggerer


def cancels(fake_bq) -> int:
    return len(fake_bq.calls_for("cancel"))


async def test_a_mark_failed_whose_state_reads_fail_twice_still_cancels_the_job(fake_bq, monkeypatch):
    answers = [ConnectionError("API server down"), TimeoutError(), "failed"]

    async def read_state(ti):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    triggerer = await deferred_trigger(fake_bq, monkeypatch, read_state)
    await triggerer.user_action(1)
    job = await async_wait_until(lambda: (j := the_job(fake_bq))["state"] == "DONE" and j, timeout=20,
                                 what="the job to be cancelled after two failed reads")
    assert job["error_result"]["reason"] == "stopped" and answers == []
    assert cancels(fake_bq) == 1


async def test_a_state_read_slower_than_airflows_on_kill_timeout_still_cancels_the_job(fake_bq, monkeypatch):
    from airflow.jobs import triggerer_job_runner

    monkeypatch.setattr(triggerer_job_runner, "_ON_CANCEL_TIMEOUT", 0.5, raising=False)  # 3.3's on_kill bound

    async def read_state(ti):
        await asyncio.sleep(2.0)  # a stalled supervisor
        return "failed"

    triggerer = await deferred_trigger(fake_bq, monkeypatch, read_state)
    await triggerer.user_action(1)  # 3.3: returns once on_kill timed out, the read still going on
    job = await async_wait_until(lambda: (j := the_job(fake_bq))["state"] == "DONE" and j, timeout=20,
                                 what="the job to be cancelled after the slow read")
    assert job["error_result"]["reason"] == "stopped"


async def test_a_state_unreadable_for_the_whole_budget_leaves_the_job_running(fake_bq, monkeypatch):
    monkeypatch.setattr(trigger_module, "STATE_READ_BUDGET_S", 2.0)
    monkeypatch.setattr(trigger_module, "STATE_READ_TIMEOUT_S", 0.5)
    reads = []

    async def read_state(ti):
        reads.append(ti)
        await asyncio.sleep(3600)  # never answers

    triggerer = await deferred_trigger(fake_bq, monkeypatch, read_state)
    await triggerer.user_action(1)
    await async_wait_until(lambda: not trigger_module._KILLS, timeout=10, what="the kill to give up")
    assert len(reads) >= 2  # retried before giving up
    assert cancels(fake_bq) == 0 and the_job(fake_bq)["state"] == "RUNNING"


async def test_a_stopping_triggerers_closed_channel_ends_the_kill_at_once_and_leaves_the_job_running(
        fake_bq, monkeypatch):
    """Airflow 3.0-3.2 (no trigger ``on_kill``): a triggerer stop cancels every trigger after its
    supervisor channel closed, and each trigger's kill rule reads its task's state through that channel.
    The read fails at once, and can never succeed again: retrying it for ``STATE_READ_BUDGET_S`` (3
    minutes) kept every stopping runner process alive until its supervisor SIGKILLed it
    (``kill(escalation_delay=10, force=True)`` in ``TriggererJobRunner._execute``'s ``finally``). The
    kill must end at once, the job left to the triggerer that picks the trigger up (state unknown).
    Airflow 3 only (2.11 reads the metadata DB); the 3.3 path is modelled with ``TRIGGER_ON_KILL`` off."""
    import time

    _, deferred = defer(submit())
    job_id = the_job(fake_bq)["job_id"]
    triggerer = TriggerRunnerHarness()  # the real state read, through the Task SDK channel
    triggerer.start(rebuild_trigger(deferred.trigger), 1)
    await async_wait_until(lambda: polled(fake_bq, job_id), what="the trigger to poll the job")
    close = await closed_triggerer_channel(monkeypatch)
    monkeypatch.setattr(trigger_module, "TRIGGER_ON_KILL", False)
    try:
        started = time.monotonic()
        await asyncio.wait_for(triggerer.shut_down(1), 5)  # the trigger task waits for its (shielded) kill
        assert not trigger_module._KILLS and time.monotonic() - started < 3.0
    finally:
        for kill in list(trigger_module._KILLS):  # on failure: do not leave the retries to the next test
            kill.cancel()
        close()
    assert cancels(fake_bq) == 0 and the_job(fake_bq)["state"] == "RUNNING"
