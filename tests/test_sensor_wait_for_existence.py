"""The sensor on a job that does not exist yet (another team's job starts later): wait_for_existence,
in poke and deferrable mode, bounded by the sensor's timeout; over real HTTP to the fake."""

import threading
import time

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_bqjobs._compat import AirflowException, AirflowSensorTimeout
from airflow_bqjobs.sensors.job import BigQueryJobSensor
from airflow_bqjobs.triggers.job import BigQueryJobTrigger
from tests.airflow_context import first_event, make_context, rebuild_trigger

REF = {"projectId": "test-project", "location": "US", "jobId": "later"}

pytestmark = pytest.mark.usefixtures("emulator")


def sensor(**kw):
    kw.setdefault("deferrable", False)
    return BigQueryJobSensor(task_id="wait", job_id="US.later", project_id="test-project", poke_interval=0.05,
                             wait_for_existence=True, **kw)


def start_later(fake_bq, bq_client, after_s: float) -> threading.Thread:
    """Another team inserts the job ``after_s`` seconds from now."""
    fake_bq.add_rule(job_id="^later$", pending_s=0, running_s=0.2, user_email="other-team@example.com")

    def insert():
        time.sleep(after_s)
        bq_client.query("SELECT 1", job_id="later", location="US", job_retry=None)

    thread = threading.Thread(target=insert, daemon=True)
    thread.start()
    return thread


def test_poke_mode_waits_for_the_job_to_appear_then_for_done(fake_bq, bq_client):
    thread = start_later(fake_bq, bq_client, 0.5)
    op = sensor(timeout=30)
    context = make_context(op)
    assert op.execute(context) == REF
    thread.join()
    assert context["ti"].xcom["job_summary"]["state"] == "DONE"
    assert fake_bq.calls_for("cancel") == []


def test_poke_mode_times_out_when_the_job_never_appears(fake_bq):
    op = sensor(timeout=0.3)
    with pytest.raises(AirflowSensorTimeout):
        op.execute(make_context(op))


def test_deferrable_mode_defers_on_a_missing_job_with_not_found_ok(fake_bq, bq_client):
    op = sensor(deferrable=True, timeout=60)
    context = make_context(op)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    _, kwargs = deferred.value.trigger.serialize()
    assert kwargs["not_found_ok"] is True and kwargs["cancel_on_kill"] is False
    thread = start_later(fake_bq, bq_client, 1.0)
    event = first_event(rebuild_trigger(deferred.value.trigger))
    thread.join()
    assert event["status"] == "done"
    assert op.execute_complete(context, event) == REF


def test_deferrable_mode_times_out_when_the_job_never_appears(fake_bq):
    op = sensor(deferrable=True, timeout=0.5)
    context = make_context(op)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    event = first_event(rebuild_trigger(deferred.value.trigger))
    assert event["status"] == "timeout" and "or for it to appear" in event["message"]
    with pytest.raises(AirflowSensorTimeout):
        op.execute_complete(context, event)


def test_without_the_option_a_missing_job_fails_at_once_and_says_how_to_wait(fake_bq):
    op = BigQueryJobSensor(task_id="wait", job_id="US.later", project_id="test-project", deferrable=False)
    with pytest.raises(AirflowException, match="pass wait_for_existence=True"):
        op.execute(make_context(op))


def test_trigger_without_not_found_ok_reports_a_missing_job_as_an_error(fake_bq, monkeypatch):
    import airflow_bqjobs.triggers.job as trigger_module

    monkeypatch.setattr(trigger_module, "READ_AFTER_CONFLICT_DELAYS", (0.05, 0.05))  # the re-reads, not 7.75 s of them
    trigger = BigQueryJobTrigger(job=REF, poll_interval=0.05)
    assert first_event(trigger)["status"] == "error"
