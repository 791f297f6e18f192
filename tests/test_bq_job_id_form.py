"""`project:job_id`, the form `bq ls -j` and `bq show -j` print, names a job everywhere: the location
comes from `location=` or the connection's `location` extra, and a job outside US/EU is found."""

import pytest

from airflow_bqjobs.operators.cancel import BigQueryCancelJobOperator
from airflow_bqjobs.operators.rerun import BigQueryRerunJobOperator
from airflow_bqjobs.sensors.job import BigQueryJobSensor
from tests.airflow_context import make_context
from tests.reliability.environment import set_connection

pytestmark = pytest.mark.usefixtures("emulator")

BQ_FORM = "test-project:bquxjob_5e1f0a2b_18f0"
JOB = BQ_FORM.partition(":")[2]


def start(fake_bq, bq_client, location, **behaviour):
    if behaviour:
        fake_bq.add_rule(job_id=f"^{JOB}$", **behaviour)
    bq_client.query("SELECT 1", job_id=JOB, location=location, job_retry=None)


def test_sensor_takes_the_location_from_location_argument(fake_bq, bq_client):
    start(fake_bq, bq_client, "asia-northeast1", running_s=0.2)
    op = BigQueryJobSensor(task_id="wait", job_id=BQ_FORM, location="asia-northeast1", project_id="test-project", poke_interval=0.05,
                           deferrable=False)
    assert op.execute(make_context(op)) == {"projectId": "test-project", "location": "asia-northeast1", "jobId": JOB}


def test_cancel_takes_the_location_from_the_connection(fake_bq, bq_client, monkeypatch):
    start(fake_bq, bq_client, "europe-west1", pending_s=0, running_s=60, cancel_s=0.1)
    set_connection(monkeypatch, "bq_eu", {"emulator_host": fake_bq.url, "project": "other-project",
                                          "location": "europe-west1"})
    op = BigQueryCancelJobOperator(task_id="cancel", job_id=BQ_FORM, gcp_conn_id="bq_eu", poll_interval=0.05)
    [entry] = op.execute(make_context(op))
    assert entry["job"] == {"projectId": "test-project", "location": "europe-west1", "jobId": JOB}
    assert entry["outcome"] == "cancelled"


def test_rerun_accepts_the_bq_form_as_its_source(fake_bq, bq_client):
    start(fake_bq, bq_client, "EU")
    op = BigQueryRerunJobOperator(task_id="again", source_job=BQ_FORM, location="EU", project_id="test-project", poll_interval=0.05,
                                  deferrable=False)
    ref = op.execute(make_context(op))
    assert ref["location"] == "EU" and ref["jobId"] != JOB
