"""Issue 7, cases 3, 4 and 5: a kill cancels only a job that no newer try of its task instance follows.

* Case 3 (zombie try): Airflow's task runner calls ``on_kill`` from its SIGTERM handler, and the
  Task SDK supervisor sends that SIGTERM when the try's heartbeat says the task instance moved on
  (404/409/410). Here a real ``dag.test()`` run executes the task through the task runner (its real
  ``_on_term`` handler and its in-process supervisor channel, which answers the state read from the
  metadata DB); the task instance is moved on by Airflow's own functions (``handle_failure``, as the
  scheduler does for a try whose heartbeat stopped; a clear; a user's mark failed) and the process
  gets the SIGTERM the supervisor would send. The heartbeat exchange itself (410/409 from the
  execution API, then the supervisor's SIGTERM) runs in tests/test_zombie_supervisor.py; the
  in-process supervisor of ``dag.test()`` does not heartbeat.
* Case 4 (triggerer takeover): Airflow's ``TriggerRunnerSupervisor.update_triggers`` puts the
  reassigned trigger into the cancel set, and Airflow's ``TriggerRunner`` cancels it as a user action
  and calls ``on_kill`` (3.3); the pre-3.3 path (a plain cancel) is checked with the same real state.
* Case 5 (``reattach_on_clear``): a clear of a deferred or running task leaves the job to the cleared
  try, which reattaches; marking the task failed still cancels.

Airflow 3.3 code (TriggerRunnerSupervisor, the Task SDK task runner); 2.11 runs its own kill path: the
SIGTERM handler ``_execute_task_with_callbacks`` installs calls ``on_kill`` (the local task job sends
that SIGTERM when its heartbeat finds the task instance moved on), and its ``dag.test()`` stops at the
killed try (``tests.compat.dag_test_stops_before_the_next_try``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections import deque
from datetime import timedelta

import pytest

from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator
from airflow_bqjobs.triggers import job as trigger_module
from tests.airflow_context import rebuild_trigger
from tests.airflow_run import D, Run
from tests.compat import AIRFLOW_V3, DAG, as_task_runner, dag_test_stops_before_the_next_try, run_dag
from tests.compat import TriggerRunnerHarness as Triggerer  # no monkeypatch: the kill rule reads the real DB
from tests.test_cancel_on_kill import (
    _finished,
    async_wait_until,
    defer,
    deferred_in_a_real_run,
    polled,
    the_job,
    wait_until,
)


@pytest.fixture(autouse=True)
def long_jobs(emulator):
    emulator.set_defaults(pending_s=0, running_s=120)
    return emulator


def reassigned(running: set[int], still_assigned: set[int]) -> set[int]:
    """Airflow's own ``update_triggers``: what the supervisor tells the runner to cancel."""
    from airflow.jobs.triggerer_job_runner import TriggerRunnerSupervisor

    supervisor = object.__new__(TriggerRunnerSupervisor)  # only the bookkeeping; no subprocess
    supervisor.running_triggers = set(running)
    supervisor.events, supervisor.failed_triggers, supervisor.creating_triggers = deque(), deque(), deque()
    supervisor.cancelling_triggers = set()
    supervisor.update_triggers(still_assigned)
    return supervisor.cancelling_triggers


async def stop_through_update_triggers(triggerer: Triggerer, trigger_id: int) -> None:
    """The trigger is no longer assigned to this triggerer (reassigned, or its task left deferred)."""
    if AIRFLOW_V3:
        to_cancel = reassigned(running={trigger_id}, still_assigned=set())
        assert to_cancel == {trigger_id}
        triggerer.runner.to_cancel.extend(to_cancel)  # TriggerStateSync.to_cancel, as the runner receives it
    else:  # 2.11: no supervisor process; the runner's own update_triggers does the same bookkeeping
        triggerer.runner.update_triggers(set())
        assert list(triggerer.runner.to_cancel) == [trigger_id]
    await triggerer.runner.cancel_triggers()
    await _finished(triggerer.runner.triggers[trigger_id]["task"])


async def start_deferred(fake_bq, register_dag, dag_id, **kw):
    fake_bq.add_rule(running_s=3)
    run, op, context = deferred_in_a_real_run(register_dag, dag_id, **kw)
    context, deferred = defer(op, context)
    job_id = the_job(fake_bq)["job_id"]
    trigger = rebuild_trigger(deferred.trigger)
    trigger.task_instance = run.task_instance("query")
    triggerer = Triggerer()
    triggerer.start(trigger, 1)
    await async_wait_until(lambda: polled(fake_bq, job_id), what="the trigger to poll the job")
    return run, op, context, trigger, triggerer, job_id


async def finish_on_another_triggerer(fake_bq, op, context, trigger, job_id):
    other = Triggerer()  # the triggerer that took the trigger over rebuilds it from the DB's kwargs
    rebuilt = rebuild_trigger(trigger)
    rebuilt.task_instance = trigger.task_instance
    await asyncio.wait_for(other.start(rebuilt, 2), 15)
    ((_, event),) = other.events
    result = await asyncio.to_thread(op.execute_complete, context, event.payload)
    assert result["jobId"] == job_id
    job = the_job(fake_bq)
    assert len(fake_bq.jobs) == 1 and job["state"] == "DONE" and job["error_result"] is None
    assert fake_bq.calls_for("cancel") == []


@pytest.mark.parametrize("airflow", ["3.3 on_kill", "pre-3.3 plain cancel"])
async def test_triggerer_takeover_leaves_the_job_running_for_the_triggerer_that_takes_over(
        fake_bq, register_dag, monkeypatch, airflow):
    run, op, context, trigger, triggerer, job_id = await start_deferred(
        fake_bq, register_dag, f"case4_takeover_{airflow[:3].replace('.', '')}")
    if airflow == "3.3 on_kill":
        if not trigger_module.TRIGGER_ON_KILL:
            pytest.skip("Airflow < 3.3 calls no trigger on_kill")
        await stop_through_update_triggers(triggerer, 1)
    else:
        monkeypatch.setattr(trigger_module, "TRIGGER_ON_KILL", False)
        await triggerer.shut_down(1)  # all that an older triggerer does when a trigger moves away
    await asyncio.sleep(0.3)
    assert run.state("query") == "deferred"
    assert fake_bq.calls_for("cancel") == [] and the_job(fake_bq)["state"] == "RUNNING"
    await finish_on_another_triggerer(fake_bq, op, context, trigger, job_id)


@pytest.mark.parametrize("state", ["failed", "success"])
async def test_triggerer_cancels_when_the_user_marks_the_deferred_task(fake_bq, register_dag, state):
    run, op, context, trigger, triggerer, job_id = await start_deferred(fake_bq, register_dag, f"case4_marked_{state}")
    run.mark("query", state)
    await stop_through_update_triggers(triggerer, 1)
    job = await async_wait_until(lambda: (j := the_job(fake_bq))["state"] == "DONE" and j, what="the job to stop")
    assert job["error_result"]["reason"] == "stopped" and len(fake_bq.calls_for("cancel")) == 1


async def test_reattach_on_clear_keeps_the_job_of_a_cleared_deferred_task_and_the_cleared_try_reattaches(
        fake_bq, register_dag):
    from airflow.providers.common.compat.sdk import TaskDeferred

    run, op, context, trigger, triggerer, job_id = await start_deferred(
        fake_bq, register_dag, "case5_deferred_cleared", reattach_on_clear=True)
    assert trigger.reattach_on_clear is True
    run.clear_task("query")
    assert run.state("query") is None
    await stop_through_update_triggers(triggerer, 1)
    await asyncio.sleep(0.3)
    assert fake_bq.calls_for("cancel") == [] and the_job(fake_bq)["state"] == "RUNNING"

    cleared_try = run.start_try("query")  # Airflow queues the cleared task's next try
    assert cleared_try["ti"].try_number == 2 and cleared_try["ti"].max_tries > context["ti"].max_tries
    with pytest.raises(TaskDeferred) as deferred:
        await asyncio.to_thread(as_task_runner, op, lambda: op.execute(cleared_try))
    assert deferred.value.trigger.ref.job_id == job_id and len(fake_bq.jobs) == 1
    await finish_on_another_triggerer(fake_bq, op, cleared_try, deferred.value.trigger, job_id)


async def test_reattach_on_clear_still_cancels_when_the_user_marks_the_task_failed(fake_bq, register_dag):
    run, op, context, trigger, triggerer, job_id = await start_deferred(
        fake_bq, register_dag, "case5_deferred_marked", reattach_on_clear=True)
    run.mark("query", "failed")
    await stop_through_update_triggers(triggerer, 1)
    job = await async_wait_until(lambda: (j := the_job(fake_bq))["state"] == "DONE" and j, what="the job to stop")
    assert job["error_result"]["reason"] == "stopped"


# -- the worker: on_kill from the task runner's own SIGTERM handler, in a real dag.test() run --

def sigterm_while_polling(fake_bq, dag_id, move_on):
    """Once the worker polls its job: ``move_on(run)`` moves the task instance on through Airflow's
    functions, then this process gets the SIGTERM that the supervisor sends for a 404/409/410 heartbeat
    (2.11: the local task job, when its heartbeat finds the task instance no longer running).

    What is checked is what ``on_kill`` does with the job (cancel, or leave it running). The try goes on
    after it in 3.x's ``dag.test()``: the task runner's handler only calls ``on_kill``, and no supervisor
    follows with the SIGKILL a deployment sends, so a job left running is awaited by the killed try
    itself; the next try runs only after a cancel failed the killed try, on 3.2+
    (``tests.compat.dag_test_stops_before_the_next_try``)."""
    done = {}

    def act():
        try:
            job_id = wait_until(lambda: fake_bq.jobs and the_job(fake_bq)["job_id"], 30, "the insert")
            wait_until(lambda: polled(fake_bq, job_id), 30, "the worker to poll")
            from airflow.models.dagrun import DagRun
            from airflow.utils.session import create_session
            from sqlalchemy import select

            with create_session() as session:
                run_id = session.scalars(select(DagRun.run_id).where(DagRun.dag_id == dag_id)).one()
            done["run"] = Run.existing(dag_id, run_id, {})
            move_on(done["run"])
            done["cancels_before"] = len(fake_bq.calls_for("cancel"))
            os.kill(os.getpid(), signal.SIGTERM)
            done["signalled"] = True
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            done["error"] = exc

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    return thread, done


def run_sync_dag(fake_bq, register_dag, dag_id, move_on, **kw):
    fake_bq.add_rule(running_s=4)
    with DAG(dag_id, schedule=None, start_date=D, catchup=False) as dag:
        BigQuerySubmitJobOperator(task_id="query", project_id="test-project", deferrable=False, poll_interval=0.2,
                                  configuration={"query": {"query": "SELECT 1", "useLegacySql": False},
                                                 "jobTimeoutMs": "600000"},
                                  retries=1, retry_delay=timedelta(0), **kw)
    register_dag(dag)
    thread, done = sigterm_while_polling(fake_bq, dag_id, move_on)
    try:
        run_dag(dag, D)
    except Exception as exc:  # noqa: BLE001 - a try whose task instance moved on may not report back
        done["dag_test"] = exc
    thread.join(30)
    assert "error" not in done and done.get("signalled"), done
    return done


def zombie(run):
    """The scheduler's answer to a try whose heartbeat stopped: fail it, up_for_retry (a new try)."""
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = run._ti(session, "query")
        ti.handle_failure("Task instance heartbeat timed out", session=session)


def test_zombie_try_on_kill_leaves_the_job_its_retry_follows(fake_bq, register_dag):
    run_sync_dag(fake_bq, register_dag, "case3_zombie", zombie)
    assert fake_bq.calls_for("cancel") == []
    (job,) = fake_bq.jobs  # one job, never cancelled: it runs to its end
    wait_until(lambda: the_job(fake_bq)["state"] == "DONE", 15, "the job to finish")
    assert the_job(fake_bq)["error_result"] is None


def test_user_mark_failed_of_a_running_task_cancels_through_the_task_runner(fake_bq, register_dag):
    run_sync_dag(fake_bq, register_dag, "case3_marked", lambda run: run.mark("query", "failed"))
    # (dag.test() may then run the task again although it was marked failed: not what a deployment does)
    first = wait_until(lambda: (j := min(fake_bq.jobs, key=lambda j: j["created_at"]))["state"] == "DONE" and j,
                       15, "the killed try's job to stop")
    assert first["error_result"]["reason"] == "stopped" and first["cancel_requested"]
    assert len(fake_bq.calls_for("cancel")) == 1


@pytest.mark.parametrize("reattach_on_clear", [True, False])
def test_clear_of_a_running_task_cancels_unless_reattach_on_clear(fake_bq, register_dag, reattach_on_clear):
    done = run_sync_dag(fake_bq, register_dag, f"case5_running_cleared_{reattach_on_clear}",
                        lambda run: run.clear_task("query"), reattach_on_clear=reattach_on_clear)
    wait_until(lambda: not fake_bq.unfinished_jobs(), 20, "the jobs to finish")
    if reattach_on_clear:  # left running: the job runs to its end, for the cleared try to reattach
        assert fake_bq.calls_for("cancel") == []
        (job,) = fake_bq.jobs
        assert job["error_result"] is None
    else:  # cancelled; the cleared try ran the next generation of the ID
        assert len(fake_bq.calls_for("cancel")) == 1
        first = min(fake_bq.jobs, key=lambda j: j["created_at"])
        assert first["error_result"]["reason"] == "stopped"
        if why_not := dag_test_stops_before_the_next_try():
            assert len(fake_bq.jobs) == 1  # the killed try started nothing more
            pytest.skip(f"the cancel is checked; the cleared try's own job is not: {why_not}")
        first, second = sorted(fake_bq.jobs, key=lambda j: j["created_at"])
        assert second["job_id"] == first["job_id"] + "_1"
        assert done["run"].state("query") == "success"  # the cleared try ran that job and succeeded
