"""What the user reads: cancel outcomes that say what happened, label errors that say how to fix them,
one format for a job (``project:LOCATION.job_id``) in every line. Real HTTP to the fake."""

import re

import pytest
from google.cloud import bigquery

from airflow_bqjobs._compat import AirflowException
from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.operators import BigQueryCancelJobOperator, BigQuerySubmitJobOperator
from tests.airflow_context import make_context

QUERY = {"query": {"query": "SELECT 1", "useLegacySql": False}}
RUN_ID = "manual__2026-01-01T00:00:00+00:00"

pytestmark = pytest.mark.usefixtures("emulator")


def start(fake_bq, bq_client, job_id, **behaviour):
    fake_bq.add_rule(job_id=f"^{job_id}$", **behaviour)
    bq_client.query("SELECT 1", job_id=job_id, location="US", job_retry=None, job_config=bigquery.QueryJobConfig())


def cancel_error(job_ids) -> str:
    op = BigQueryCancelJobOperator(task_id="cancel", job_id=job_ids, project_id="test-project", deferrable=False,
                                   poll_interval=0.05)
    with pytest.raises(AirflowException) as err:
        op.execute(make_context(op))
    return str(err.value)


def test_cancel_with_a_missing_and_a_done_job_does_not_claim_a_cancellation(fake_bq, bq_client):
    start(fake_bq, bq_client, "finished", pending_s=0, running_s=0)
    message = cancel_error(["US.nope", "US.finished"])
    assert "No such job: test-project:US.nope" in message
    assert "Cancellation was requested" not in message and "already DONE: nothing was cancelled" in message
    assert fake_bq.calls_for("cancel") == []


def test_cancel_with_a_missing_and_a_running_job_counts_the_request(fake_bq, bq_client):
    start(fake_bq, bq_client, "busy", pending_s=0, running_s=60, cancel_s=0.1)
    message = cancel_error(["US.nope", "US.busy"])
    assert "Cancellation was requested for the other 1 unfinished job(s)" in message
    assert len(fake_bq.calls_for("cancel")) == 1


def test_cancel_of_only_a_missing_job_says_nothing_about_others(fake_bq):
    message = cancel_error("US.nope")
    assert "other" not in message and "missing_ok=True" in message


def submit(**kw):
    return BigQuerySubmitJobOperator(task_id="q", configuration=QUERY, project_id="test-project", deferrable=False,
                                     poll_interval=0.05, **kw)


def test_a_raw_run_id_in_a_label_says_how_to_sanitise_it(fake_bq):
    op = submit(labels={"run": "{{ run_id }}"})
    context = make_context(op, run_id=RUN_ID)
    op.render_template_fields(context)
    with pytest.raises(InvalidJobInput) as err:
        op.execute(context)
    assert err.value.field == "labels" and "{{ run_id | label_value }}" in str(err.value)
    assert "sanitize_label_value" in str(err.value) and fake_bq.calls == []


def test_the_label_value_filter_sanitises_as_the_providers_own_labels(fake_bq):
    op = submit(labels={"run": "{{ run_id | label_value }}"})
    context = make_context(op, run_id=RUN_ID)
    op.render_template_fields(context)
    op.execute(context)
    (job,) = fake_bq.jobs
    assert job["labels"]["run"] == job["labels"]["airflow-run"] == "manual__2026-01-01t00_00_00_00_00"


def test_a_dags_own_label_value_filter_wins(fake_bq):
    from airflow.providers.common.compat.sdk import DAG

    with DAG("own_filter", schedule=None, user_defined_filters={"label_value": lambda text: "mine"}):
        op = submit(labels={"run": "{{ run_id | label_value }}"})
    context = make_context(op, run_id=RUN_ID)
    op.render_template_fields(context)
    assert op.labels == {"run": "mine"}


def test_one_format_for_a_job_in_every_line(fake_bq, capsys, caplog):
    """The operator names no location; BigQuery chooses US: every line says test-project:US.<id>."""
    fake_bq.add_rule(pending_s=0, running_s=0.5)
    op = submit()
    op.execute(make_context(op))
    (job,) = fake_bq.jobs
    text = capsys.readouterr().out + "\n".join(r.getMessage() for r in caplog.records)
    named = re.findall(r"[\w.:-]*" + re.escape(job["job_id"]), text)
    assert len(named) >= 3 and set(named) == {f"test-project:US.{job['job_id']}"}, set(named)
