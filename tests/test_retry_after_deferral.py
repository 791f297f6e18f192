"""A deferrable try whose job failed is retried from ``execute``, never resumed with the old event.

Airflow 3.0.x keeps ``next_method``/``next_kwargs`` when a try that resumed from a deferral fails
into ``up_for_retry`` (apache/airflow#56704; 3.1's execution API clears them): its retry would start
at ``execute_complete`` with the failed try's event and fail on the old job without running. The
trigger carries the deferring try's number into its events, and ``execute_complete`` starts over
when it is not this try (``operators._waiting.resumed_by_a_later_try``). Runs on every version: on 2.11 and 3.1+
Airflow itself starts the retry at ``execute``; on 3.0 the check does.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator
from airflow_bqjobs.sensors.job import BigQueryJobSensor
from tests.airflow_context import first_event, make_context, rebuild_trigger
from tests.compat import DAG, TaskDeferred, run_dag

LOGICAL_DATE = datetime(2026, 3, 3, tzinfo=timezone.utc)
QUERY = {"query": {"query": "SELECT 1", "useLegacySql": False}}
FAILED = {"reason": "invalidQuery", "message": "Syntax error at [1:1]"}


def test_a_deferrable_task_whose_first_job_failed_succeeds_on_its_retry_with_a_new_job(emulator, register_dag):
    with DAG("retry_after_deferral", schedule=None, start_date=LOGICAL_DATE, catchup=False) as dag:
        BigQuerySubmitJobOperator(task_id="q", project_id="test-project", deferrable=True, poll_interval=0.05,
                                  retries=1, retry_delay=timedelta(0),
                                  configuration={"query": {"query": "SELECT 1", "useLegacySql": False}})
    register_dag(dag)
    emulator.add_rule(job_id="_q_", times=1, running_s=0.5, error=FAILED)

    run = run_dag(dag, LOGICAL_DATE)

    assert {ti.task_id: str(ti.state) for ti in run.get_task_instances()} == {"q": "success"}
    first, second = sorted(emulator.jobs, key=lambda job: job["job_id"])
    assert first["error_result"]["reason"] == "invalidQuery" and second["error_result"] is None
    assert second["job_id"] == first["job_id"] + "_1"  # the retry's new generation, as a sync retry makes


def submit() -> BigQuerySubmitJobOperator:
    return BigQuerySubmitJobOperator(task_id="t", project_id="test-project", deferrable=True, poll_interval=0.05,
                                     retries=1, configuration=QUERY)


def deferred_try_one(op, emulator) -> tuple[dict, dict]:
    """Try 1 deferred on its job, which then failed: (the trigger's kwargs, the trigger's event)."""
    emulator.add_rule(times=1, running_s=0.3, error=FAILED)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(make_context(op, try_number=1))
    return deferred.value.trigger.serialize()[1], first_event(rebuild_trigger(deferred.value.trigger))


def test_the_trigger_carries_the_try_that_deferred_into_its_event(emulator):
    kwargs, event = deferred_try_one(submit(), emulator)
    assert kwargs["deferred_try"] == 1 and event["deferred_try"] == 1


def test_the_try_that_deferred_resumes_on_its_event_and_fails_on_its_job(emulator):
    op = submit()
    _, event = deferred_try_one(op, emulator)
    with pytest.raises(Exception, match="Syntax error"):
        op.execute_complete(make_context(op, try_number=1), event)
    assert len(emulator.jobs) == 1


def test_a_later_try_given_that_event_starts_over_with_a_new_job(emulator):
    """What Airflow 3.0 does on the retry: try 2 resumed with try 1's event. It inserts its own job."""
    op = submit()
    _, event = deferred_try_one(op, emulator)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute_complete(make_context(op, try_number=2), event)
    assert deferred.value.trigger.serialize()[1]["deferred_try"] == 2
    first, second = sorted(emulator.jobs, key=lambda job: job["job_id"])
    assert second["job_id"] == first["job_id"] + "_1"


def test_an_event_without_a_try_resumes_as_before(emulator):
    """A trigger deferred before the try was carried (an upgrade): resumed, not started over."""
    op = submit()
    _, event = deferred_try_one(op, emulator)
    del event["deferred_try"]
    with pytest.raises(Exception, match="Syntax error"):
        op.execute_complete(make_context(op, try_number=2), event)
    assert len(emulator.jobs) == 1


def test_the_sensor_started_over_by_a_later_try_waits_again(emulator, bq_client):
    emulator.add_rule(job_id="^theirs$", pending_s=0, running_s=30)
    bq_client.query("SELECT 1", job_id="theirs", job_retry=None)
    sensor = BigQueryJobSensor(task_id="s", project_id="test-project", job_id="theirs", deferrable=True, timeout=60)
    stale = {"status": "done", "job": {"projectId": "test-project", "location": "US", "jobId": "theirs"},
             "deferred_try": 1}
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute_complete(make_context(sensor, try_number=2), stale)
    assert deferred.value.trigger.serialize()[1]["deferred_try"] == 2
