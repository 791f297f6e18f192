"""Progress while waiting, over real HTTP to the fake: sync wait, the trigger, the final line; and the
fake's running-query statistics that the lines are made of."""

import logging

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator
from airflow_bqjobs.triggers.job import BigQueryJobTrigger
from tests.airflow_context import first_event, make_context, rebuild_trigger

QUERY = {"query": {"query": "SELECT 1", "useLegacySql": False}}

pytestmark = pytest.mark.usefixtures("emulator")


def logged(capsys, caplog) -> list[str]:
    """Each line logged since the last call, once. 2.11 and 3.0 log through the logging module, whose
    root handler also prints to stdout: a stdout line that ends with a captured record is that record."""
    messages = [r.getMessage() for r in caplog.records]
    caplog.clear()
    out = [line for line in capsys.readouterr().out.splitlines() if not any(line.endswith(m) for m in messages)]
    return out + messages


def test_sync_wait_logs_progress_at_most_once_a_minute_and_a_final_line(fake_bq, capsys, caplog):
    fake_bq.add_rule(pending_s=0, running_s=3, total_bytes_processed=10 * 1024**2)
    op = BigQuerySubmitJobOperator(task_id="q", configuration=QUERY, project_id="test-project", deferrable=False,
                                   poll_interval=0.05)
    op.execute(make_context(op))
    lines = logged(capsys, caplog)
    progress = [line for line in lines if " RUNNING for " in line]
    assert len(fake_bq.calls_for("get")) > 5 and len(progress) == 1, progress  # many polls, one line
    assert "slot-ms" in progress[0] and "stages done" in progress[0] and "next check in" in progress[0]
    (final,) = [line for line in lines if " DONE in " in line]
    assert "10.0 MiB billed" in final and "cache hit: no" in final
    assert "test-project:US.airflow_test_dag_q_" in final


def test_deferred_wait_logs_progress_from_the_trigger_and_the_final_line_once(fake_bq, capsys, caplog):
    caplog.set_level(logging.INFO)  # a triggerer's level (2.11's test session leaves the root logger at WARNING)
    fake_bq.add_rule(pending_s=0, running_s=2.0)
    op = BigQuerySubmitJobOperator(task_id="q", configuration=QUERY, project_id="test-project", deferrable=True,
                                   poll_interval=0.1)
    context = make_context(op)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = rebuild_trigger(deferred.value.trigger)
    event = first_event(trigger)
    in_trigger = logged(capsys, caplog)
    name = f"test-project:US.{trigger.ref.job_id}"
    assert [line for line in in_trigger if f"Job {name} RUNNING for" in line and "slot-ms" in line]
    assert not [line for line in in_trigger if " DONE in " in line]
    op.execute_complete(context, event)
    (final,) = [line for line in logged(capsys, caplog) if f"Job {name} DONE in" in line]
    assert "billed" in final and "cache hit: no" in final


def test_the_fake_reports_a_running_querys_plan_and_slot_time(fake_bq, bq_client):
    fake_bq.add_rule(pending_s=0, running_s=30)
    bq_client.query("SELECT 1", job_id="slow", location="US", job_retry=None)
    fake_bq.clock.advance(15)
    job = bq_client._connection.api_request(method="GET", path="/projects/test-project/jobs/slow",
                                            query_params={"location": "US"})
    query = job["statistics"]["query"]
    assert job["status"]["state"] == "RUNNING"
    assert [s["status"] for s in query["queryPlan"]] == ["COMPLETE", "RUNNING", "PENDING"]
    assert int(query["totalSlotMs"]) > 0 and query["timeline"][-1]["completedUnits"] == "50"
    assert "totalBytesProcessed" not in query  # BigQuery reports bytes with DONE


def test_the_fake_reports_the_whole_plan_complete_when_done(fake_bq, bq_client):
    fake_bq.add_rule(pending_s=0, running_s=0.1)
    bq_client.query("SELECT 1", job_id="quick", location="US", job_retry=None).result()
    job = bq_client._connection.api_request(method="GET", path="/projects/test-project/jobs/quick",
                                            query_params={"location": "US"})
    assert {s["status"] for s in job["statistics"]["query"]["queryPlan"]} == {"COMPLETE"}
    assert job["statistics"]["query"]["cacheHit"] is False


def test_a_trigger_without_not_found_ok_still_serialises_it_false():
    _, kwargs = BigQueryJobTrigger(job="US.x").serialize()
    assert kwargs["not_found_ok"] is False


def test_sensor_pokes_log_progress_at_most_once_a_minute(fake_bq, bq_client, capsys, caplog):
    from airflow_bqjobs.sensors.job import BigQueryJobSensor

    fake_bq.add_rule(pending_s=0, running_s=2.0)
    bq_client.query("SELECT 1", job_id="theirs", location="US", job_retry=None)
    op = BigQueryJobSensor(task_id="wait", job_id="US.theirs", project_id="test-project", poke_interval=0.05,
                           deferrable=False)
    op.execute(make_context(op))
    progress = [line for line in logged(capsys, caplog) if "Job test-project:US.theirs RUNNING for" in line]
    assert len(progress) == 1 and len(fake_bq.calls_for("get")) > 5
