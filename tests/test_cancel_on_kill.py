"""Cancel on kill and on timeout, and never on a triggerer restart.

Deferred tasks run their trigger through Airflow's own ``TriggerRunner.run_trigger`` (the coroutine
the triggerer process runs for every trigger, via ``tests.compat.TriggerRunnerHarness``): a user
action reaches it as this Airflow sends it (3.3: the trigger task cancelled with the user-action
message, then ``on_kill``; older: a plain cancel, the task no longer deferred), a triggerer shutdown
as a plain cancel. Timeouts run in real ``dag.test()`` runs where they can.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from airflow_bqjobs._compat import AirflowException
from airflow_bqjobs.core.errors import JobFailed
from airflow_bqjobs.core.job_ref import JobRef
from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator
from airflow_bqjobs.triggers import job as trigger_module
from tests.airflow_context import first_event, make_context, rebuild_trigger
from tests.compat import TaskDeferred, TriggerRunnerHarness, as_task_runner, run_dag

# The user's own jobTimeoutMs (10 min) keeps BigQuery's server-side stop out of the way, so a stopped
# job here can only have been stopped by our cancel.
LONG_QUERY = {"query": {"query": "SELECT 1", "useLegacySql": False}, "jobTimeoutMs": "600000"}
D = datetime(2026, 3, 1, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def long_jobs(emulator):
    emulator.set_defaults(pending_s=0, running_s=120)
    return emulator


def submit(task_id="query", **kw):
    kw.setdefault("configuration", LONG_QUERY)
    kw.setdefault("deferrable", True)
    return BigQuerySubmitJobOperator(task_id=task_id, project_id="test-project", poll_interval=0.05, **kw)


def defer(op, context=None):
    """Run ``execute`` up to its deferral; returns (context, TaskDeferred)."""
    context = context or make_context(op)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    return context, deferred.value


def the_job(fake_bq):
    (job,) = fake_bq.jobs
    return job


def wait_until(predicate, timeout=10.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def async_wait_until(predicate, timeout=10.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := predicate():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def _finished(task: asyncio.Task) -> None:
    with pytest.raises(asyncio.CancelledError):
        await task


def polled(fake_bq, job_id):
    """The trigger checked the job at least twice: its shared poller lists running jobs, reads finished ones."""
    return len(fake_bq.calls_for("get", job_id=job_id)) + len(fake_bq.calls_for("list")) >= 2


def deferred_in_a_real_run(register_dag, dag_id, **kw):
    """A DAG run in the metadata DB whose ``query`` try deferred; returns (run, operator, context)."""
    from tests.airflow_run import Run
    from tests.compat import DAG

    with DAG(dag_id, schedule=None, start_date=D, catchup=False) as dag:
        op = submit(**kw)
    register_dag(dag)
    run = Run(dag, {"query": op})
    context = run.start_try("query")
    run.set_state("query", "deferred")
    return run, op, context


async def test_user_kill_of_a_deferred_task_cancels_its_job_within_seconds(fake_bq, register_dag, monkeypatch):
    run, op, context = deferred_in_a_real_run(register_dag, "kill_user_deferred")
    _, deferred = defer(op, context)
    job_id = the_job(fake_bq)["job_id"]
    trigger = rebuild_trigger(deferred.trigger)
    trigger.task_instance = run.task_instance("query")
    triggerer = TriggerRunnerHarness(monkeypatch)
    triggerer.start(trigger, 1)
    await async_wait_until(lambda: polled(fake_bq, job_id), what="the trigger to poll the job")
    assert the_job(fake_bq)["state"] == "RUNNING"

    killed = time.monotonic()
    run.mark("query", "failed")
    await triggerer.user_action(1)
    job = await async_wait_until(lambda: (j := the_job(fake_bq))["state"] == "DONE" and j, what="the job to stop")
    assert time.monotonic() - killed < 5
    assert job["error_result"]["reason"] == "stopped" and job["cancel_requested"]
    # One cancel: on 3.3 on_kill's (the pre-3.3 fallback stays out of the way), before it the fallback's.
    assert len(fake_bq.calls_for("cancel")) == 1
    assert not triggerer.events


async def test_triggerer_restart_leaves_the_job_running_and_the_rebuilt_trigger_awaits_it(fake_bq, monkeypatch):
    fake_bq.add_rule(running_s=3)
    op = submit()
    context, deferred = defer(op)
    job_id = the_job(fake_bq)["job_id"]
    old = rebuild_trigger(deferred.trigger)
    triggerer = TriggerRunnerHarness(monkeypatch)
    triggerer.start(old, 1)
    await async_wait_until(lambda: polled(fake_bq, job_id), what="the trigger to poll the job")

    await triggerer.shut_down(1)  # run_trigger has run the old instance's cleanup() on the way out
    await old.cleanup()  # and running it again changes nothing
    await asyncio.sleep(0.3)
    assert the_job(fake_bq)["state"] == "RUNNING" and not the_job(fake_bq)["cancel_requested"]
    assert fake_bq.calls_for("cancel") == []

    new_triggerer = TriggerRunnerHarness(monkeypatch)  # the next triggerer rebuilds the trigger from the DB's kwargs
    task = new_triggerer.start(rebuild_trigger(old), 2)
    await asyncio.wait_for(task, 15)
    ((_, event),) = new_triggerer.events
    assert event.payload["status"] == "done" and event.payload["error_result"] is None
    result = await asyncio.to_thread(op.execute_complete, context, event.payload)
    assert result["jobId"] == job_id
    job = the_job(fake_bq)
    assert job["state"] == "DONE" and job["error_result"] is None and fake_bq.calls_for("cancel") == []


def test_deferral_deadline_cancels_the_job_and_fails_the_task_with_a_timeout(fake_bq):
    op = submit(execution_timeout=timedelta(seconds=2))
    context, deferred = defer(op)
    trigger = deferred.trigger
    start = context["ti"].start_date
    assert trigger.deadline == pytest.approx((start + timedelta(seconds=2)).timestamp())
    # Airflow's own deferral timeout is only a backstop, well after our deadline
    backstop = datetime.now(timezone.utc) + deferred.timeout
    assert backstop - (start + timedelta(seconds=2)) > timedelta(seconds=90)

    event = first_event(rebuild_trigger(trigger))
    assert event["status"] == "timeout" and "cancellation requested" in event["message"]
    job = wait_until(lambda: (j := the_job(fake_bq))["state"] == "DONE" and j, what="the job to stop")
    assert job["error_result"]["reason"] == "stopped" and job["cancel_requested"]
    with pytest.raises(AirflowException, match=r"Deadline passed while waiting for job .*Task timed out"):
        op.execute_complete(context, event)


def test_server_side_job_timeout_comes_from_execution_timeout_unless_set(fake_bq):
    bounded = submit(task_id="bounded", deferrable=False, execution_timeout=timedelta(minutes=5),
                     configuration={"query": {"query": "SELECT 1", "useLegacySql": False}})
    own = submit(task_id="own", deferrable=False, execution_timeout=timedelta(minutes=5))
    unbounded = submit(task_id="unbounded", deferrable=False,
                       configuration={"query": {"query": "SELECT 1", "useLegacySql": False}})
    timeouts = [op.build_job(make_context(op))[1].get("jobTimeoutMs") for op in (bounded, own, unbounded)]
    assert timeouts == ["300000", "600000", None]


async def test_cancel_on_kill_false_leaves_the_job_running_on_kill_and_deadline(fake_bq, monkeypatch):
    op = submit(cancel_on_kill=False, execution_timeout=timedelta(seconds=1))
    _, deferred = defer(op)
    job_id = the_job(fake_bq)["job_id"]
    triggerer = TriggerRunnerHarness(monkeypatch)
    triggerer.start(rebuild_trigger(deferred.trigger), 1)
    await async_wait_until(lambda: polled(fake_bq, job_id), what="the trigger to poll the job")
    await triggerer.user_action(1)

    deadline_task = triggerer.start(rebuild_trigger(deferred.trigger), 2)
    await asyncio.wait_for(deadline_task, 10)
    ((_, event),) = triggerer.events
    assert event.payload["status"] == "timeout" and "cancellation" not in event.payload["message"]

    sync = submit(task_id="sync", deferrable=False, cancel_on_kill=False)
    sync._waiting_on = sync.make_hook().resolve(JobRef(job_id))
    sync.on_kill()
    await asyncio.sleep(0.3)
    assert fake_bq.calls_for("cancel") == []
    assert the_job(fake_bq)["state"] == "RUNNING"


def test_sync_on_kill_cancels_the_job_the_worker_waits_for(fake_bq, monkeypatch):
    """Airflow's task runner calls task.on_kill() from its SIGTERM handler while execute() polls; here
    the user marked the task failed (the real task-runner path: tests/test_kill_signals.py)."""
    from airflow_bqjobs.operators import _waiting

    monkeypatch.setattr(_waiting, "current_task_state_within", lambda ti, timeout: "failed")
    op = submit(deferrable=False)
    failure = []

    def run():
        try:
            as_task_runner(op, lambda: op.execute(make_context(op)))  # as the runner calls it (2.11 checks)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            failure.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    job_id = wait_until(lambda: fake_bq.jobs and the_job(fake_bq)["job_id"], what="the job to be inserted")
    wait_until(lambda: polled(fake_bq, job_id), what="the worker to poll the job")
    op.on_kill()
    worker.join(10)
    job = the_job(fake_bq)
    assert job["state"] == "DONE" and job["error_result"]["reason"] == "stopped"
    assert len(failure) == 1 and isinstance(failure[0], JobFailed) and "stopped" in str(failure[0])


# -- Airflow < 3.3: no trigger on_kill; the trigger tells a kill from a restart by its task's state --

@pytest.fixture
def old_airflow(monkeypatch):
    """Airflow before 3.3 (cannot be installed next to 3.3): no on_kill; task state as the DB says."""
    monkeypatch.setattr(trigger_module, "TRIGGER_ON_KILL", False)
    monkeypatch.setattr(trigger_module, "STATE_READ_BUDGET_S", 1.5)  # "unreadable": for all of a short budget
    states = {}

    async def task_instance_state(ti):
        state = states["now"]
        if isinstance(state, Exception):
            raise state
        return state

    monkeypatch.setattr(trigger_module, "task_instance_state", task_instance_state)
    return states


async def first_of(trigger):
    async for event in trigger.run():
        return event


@pytest.mark.parametrize(
    ("state", "cancel_on_kill", "cancelled"),
    [("failed", True, True), ("success", True, True), (None, True, True), ("restarting", True, True),
     ("deferred", True, False), ("up_for_retry", True, False), ("scheduled", True, True), ("running", True, True),
     (ConnectionError("API server down"), True, False), ("failed", False, False)],
)
async def test_pre_3_3_fallback_cancels_only_when_the_task_left_deferred(fake_bq, old_airflow, state, cancel_on_kill,
                                                                        cancelled):
    """failed/success: marked by a user; None/restarting: cleared; deferred: a restart or a takeover;
    up_for_retry: a try follows the job; scheduled/running: cleared, the cleared try already queued or
    running (Airflow's own trigger timeout: see below)."""
    old_airflow["now"] = state
    op = submit(cancel_on_kill=cancel_on_kill)
    _, deferred = defer(op)
    job_id = the_job(fake_bq)["job_id"]
    trigger = rebuild_trigger(deferred.trigger)
    trigger.task_instance = SimpleNamespace(dag_id="test_dag", task_id="query", run_id="r", map_index=-1)
    task = asyncio.create_task(first_of(trigger))
    await async_wait_until(lambda: polled(fake_bq, job_id), what="the trigger to poll the job")
    task.cancel()  # all that Airflow < 3.3 does, on a kill and on a restart alike
    await _finished(task)
    assert len(fake_bq.calls_for("cancel")) == (1 if cancelled else 0)
    await asyncio.sleep(0.4)
    assert the_job(fake_bq)["state"] == ("DONE" if cancelled else "RUNNING")


async def test_pre_3_3_fallback_cancels_when_stopped_after_its_deadline(fake_bq, old_airflow):
    """Airflow 2 caps the deferral timeout at our deadline: its trigger timeout stops the trigger (the
    task then ``scheduled`` to fail), and the fallback cancels because the deadline has passed."""
    old_airflow["now"] = "scheduled"
    op = submit(execution_timeout=timedelta(seconds=30))
    _, deferred = defer(op)
    trigger = rebuild_trigger(deferred.trigger)
    trigger.deadline = time.time() - 1
    trigger.task_instance = SimpleNamespace(dag_id="test_dag", task_id="query", run_id="r", map_index=-1)
    await trigger._cancel_if_killed()
    assert len(fake_bq.calls_for("cancel")) == 1


# -- real dag.test() runs -------------------------------------------------------------------------

def test_dag_test_execution_timeouts_cancel_the_job_sync_and_deferred(fake_bq, register_dag):
    """execution_timeout in a real run: sync, Airflow's timeout calls on_kill; deferred, our trigger's
    deadline does it (dag.test runs the trigger in line and ignores Airflow's deferral timeout)."""
    from tests.compat import DAG

    with DAG("bqjobs_kill_timeouts", schedule=None, start_date=D) as dag:
        deferred = submit(task_id="deferred_wait", deferrable=True, execution_timeout=timedelta(seconds=3))
        # After the deferred task: on 2.11 the sync task's timeout ends dag.test() (see run_dag).
        deferred >> submit(task_id="sync_wait", deferrable=False, execution_timeout=timedelta(seconds=3),
                           trigger_rule="all_done")
    register_dag(dag)
    started = time.monotonic()
    run = run_dag(dag, D)
    assert time.monotonic() - started < 60
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"sync_wait": "failed", "deferred_wait": "failed"}
    assert sorted(j["labels"]["airflow-task"] for j in fake_bq.jobs) == ["deferred_wait", "sync_wait"]
    wait_until(lambda: not fake_bq.unfinished_jobs(), what="both jobs to stop")
    for job in fake_bq.jobs:
        assert job["error_result"]["reason"] == "stopped" and job["cancel_requested"], job
        assert job["end_at"] - job["created_at"] < 10  # stopped at the timeout, not at its 120 s end
