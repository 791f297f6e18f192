"""The job sensor over real HTTP to the fake: poke and deferrable paths, failures, timeouts, never a cancel."""

import asyncio
import time

import pytest

from airflow_bqjobs._compat import AirflowException, AirflowFailException, AirflowSensorTimeout, AirflowSkipException
from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.sensors.job import BigQueryJobSensor
from tests.airflow_context import first_event, make_context, rebuild_trigger
from tests.compat import TaskDeferred

REF = {"projectId": "test-project", "location": "US", "jobId": "theirs"}


pytestmark = pytest.mark.usefixtures("emulator")


def start(fake_bq, bq_client, job_id="theirs", location="US", **behaviour):
    """Another team's job: inserted with the real client, by another user."""
    fake_bq.add_rule(job_id=f"^{job_id}$", user_email="other-team@example.com", **behaviour)
    bq_client.query("SELECT 1", job_id=job_id, location=location, job_retry=None)


def sensor(job_id="theirs", **kw):
    kw.setdefault("deferrable", False)
    return BigQueryJobSensor(task_id="wait", job_id=job_id, project_id="test-project", poke_interval=0.05, **kw)


def defer(op, context):
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    return deferred.value


def test_poke_mode_succeeds_on_done_and_pushes_the_summary(fake_bq, bq_client):
    start(fake_bq, bq_client, running_s=0.3)
    op = sensor()
    context = make_context(op)
    assert op.execute(context) == REF
    summary = context["ti"].xcom["job_summary"]
    assert (summary["job_id"], summary["state"], summary["error_result"]) == ("theirs", "DONE", None)
    assert len(fake_bq.calls_for("get")) >= 2


@pytest.mark.parametrize("deferrable", [False, True])
@pytest.mark.parametrize(
    "error, reason", [({"reason": "invalidQuery", "message": "Syntax error"}, "invalidQuery"), ("stopped", "stopped")]
)
def test_failed_or_cancelled_job_fails_the_sensor(fake_bq, bq_client, deferrable, error, reason):
    start(fake_bq, bq_client, pending_s=0, running_s=0.2, error=error)
    op = sensor(deferrable=deferrable)
    context = make_context(op)
    with pytest.raises(AirflowFailException, match=rf"theirs failed: \[{reason}\]"):
        if deferrable:
            deferred = defer(op, context)
            op.execute_complete(context, first_event(rebuild_trigger(deferred.trigger)))
        else:
            op.execute(context)
    assert context["ti"].xcom["job_summary"]["error_result"]["reason"] == reason


def test_fail_on_error_off_succeeds_and_soft_fail_skips(fake_bq, bq_client):
    start(fake_bq, bq_client, pending_s=0, running_s=0, error="invalidQuery")
    op = sensor(fail_on_error=False)
    assert op.execute(make_context(op)) == REF
    op = sensor(soft_fail=True)
    with pytest.raises(AirflowSkipException):
        op.execute(make_context(op))


def test_poke_mode_timeout_and_soft_fail_never_cancel(fake_bq, bq_client):
    start(fake_bq, bq_client, running_s=60)
    op = sensor(timeout=0.3)
    with pytest.raises(AirflowSensorTimeout):
        op.execute(make_context(op))
    op = sensor(timeout=0.2, soft_fail=True)
    with pytest.raises(AirflowSkipException):
        op.execute(make_context(op))
    op.on_kill()
    assert fake_bq.calls_for("cancel") == [] and fake_bq.job("theirs")["state"] == "RUNNING"


def test_deferrable_waits_in_the_trigger_and_never_cancels(fake_bq, bq_client):
    start(fake_bq, bq_client, location="EU", pending_s=0, running_s=0.4)
    op = sensor("test-project:EU.theirs", deferrable=True, timeout=120)
    context = make_context(op)
    deferred = defer(op, context)
    _, kwargs = deferred.trigger.serialize()
    assert kwargs["job"] == {**REF, "location": "EU"} and kwargs["cancel_on_kill"] is False
    assert kwargs["deadline"] == pytest.approx(context["ti"].start_date.timestamp() + 120)
    assert deferred.method_name == "execute_complete"
    trigger = rebuild_trigger(deferred.trigger)
    asyncio.run(trigger.on_kill())  # a user marks the task failed: someone else's job keeps running
    assert fake_bq.calls_for("cancel") == []
    event = first_event(trigger)
    assert op.execute_complete(context, event) == {**REF, "location": "EU"}
    assert context["ti"].xcom["job_summary"]["state"] == "DONE"


def test_deferrable_on_a_done_job_does_not_defer(fake_bq, bq_client):
    start(fake_bq, bq_client, pending_s=0, running_s=0)
    op = sensor(REF, deferrable=True)
    assert op.execute(make_context(op)) == REF


@pytest.mark.parametrize("soft_fail, expected", [(False, AirflowSensorTimeout), (True, AirflowSkipException)])
def test_deferrable_timeout_becomes_a_sensor_timeout(fake_bq, bq_client, soft_fail, expected):
    start(fake_bq, bq_client, running_s=60)
    op = sensor(deferrable=True, timeout=0.5, soft_fail=soft_fail)
    context = make_context(op)
    deferred = defer(op, context)
    began = time.monotonic()
    event = first_event(rebuild_trigger(deferred.trigger))
    assert event["status"] == "timeout" and time.monotonic() - began < 5
    with pytest.raises(expected):
        op.execute_complete(context, event)
    assert fake_bq.calls_for("cancel") == [] and fake_bq.job("theirs")["state"] == "RUNNING"


def test_default_deferrable_comes_from_airflow_config(monkeypatch):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    assert BigQueryJobSensor(task_id="s", job_id="x").deferrable is True
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "False")
    assert BigQueryJobSensor(task_id="s", job_id="x").deferrable is False


@pytest.mark.parametrize("deferrable", [False, True])
def test_missing_job_fails_clearly(fake_bq, deferrable):
    op = sensor("US.nope", deferrable=deferrable)
    with pytest.raises(AirflowException, match=r"Job test-project:US\.nope does not exist"):
        op.execute(make_context(op))


def test_job_deleted_while_deferred_fails_clearly(fake_bq, bq_client):
    start(fake_bq, bq_client, pending_s=0, running_s=1.0)  # still running when execute reads it, even on a loaded machine
    op = sensor(deferrable=True)
    context = make_context(op)
    deferred = defer(op, context)
    event = first_event(rebuild_trigger(deferred.trigger))
    bq_client.delete_job_metadata("theirs", location="US")
    with pytest.raises(AirflowException, match="does not exist"):
        op.execute_complete(context, event)


@pytest.mark.parametrize(
    "job_id, field", [("bad id", "job_id"), (["a", "b"], "job_id"), ("x:", "job_id"), (None, "job_id")]
)
def test_bad_job_id_fails_at_dag_parse_time(fake_bq, job_id, field):
    with pytest.raises(InvalidJobInput) as err:
        sensor(job_id)
    assert err.value.field == field and fake_bq.calls == []


def test_transient_errors_do_not_fail_the_sensor(fake_bq, bq_client):
    start(fake_bq, bq_client, running_s=0.2)
    fake_bq.inject("503", "get", count=3)
    op = sensor()
    assert op.execute(make_context(op)) == REF
