"""The example DAGs under real Airflow (``dag.test()``, deferrable tasks run their trigger in line)
against the HTTP fake: every task succeeds, deferrable ones really defer, and running the same DAG
run again creates no job."""

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.compat import dag_bag, run_dag, xcom_values
from tests.pacing import check_often

EXAMPLES = Path(__file__).resolve().parent.parent / "example_dags"
LOGICAL_DATE = datetime(2025, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def example_dags(airflow_db, fake_bq, monkeypatch):
    extra = {"project": "test-project", "emulator_host": fake_bq.url}
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps({"conn_type": "bigquery_jobs", "extra": extra}))
    bag = dag_bag(EXAMPLES)
    assert bag.import_errors == {}
    return {dag_id: check_often(dag) for dag_id, dag in bag.dags.items()}  # no 1-2 s pauses between checks


@pytest.fixture
def triggered_jobs(monkeypatch):
    """Job IDs each BigQueryJobTrigger waited on (dag.test runs triggers in this process)."""
    from airflow_bqjobs.triggers.job import BigQueryJobTrigger

    seen, real_run = [], BigQueryJobTrigger.run

    def run(self):
        seen.append(self.ref.job_id)
        return real_run(self)

    monkeypatch.setattr(BigQueryJobTrigger, "run", run)
    return seen


@pytest.fixture
def finish_once_deferred(fake_bq, monkeypatch):
    """``finish_once_deferred(job_id_regex)``: a trigger that starts waiting on such a job moves the fake's
    clock 60 s on, so a job that runs 60 s on that clock (``running_s``) ends once its task has really
    deferred, however fast or slow dag.test() is, and no test waits for it in real time. A task that
    does not defer finds the job RUNNING for 60 real seconds (and the test's deferral check fails)."""
    from airflow_bqjobs.triggers.job import BigQueryJobTrigger

    patterns, real_run = [], BigQueryJobTrigger.run

    def run(self):
        if any(re.search(p, self.ref.job_id) for p in patterns):
            fake_bq.clock.advance(60)
        return real_run(self)

    monkeypatch.setattr(BigQueryJobTrigger, "run", run)
    return patterns.append


def test_quickstart_defers_succeeds_and_reruns_without_new_jobs(example_dags, fake_bq, triggered_jobs,
                                                                 finish_once_deferred):
    deferrable = "build_daily_totals|per_region"
    fake_bq.add_rule(job_id=deferrable, running_s=60)  # still running when the deferrable tasks defer
    finish_once_deferred(deferrable)
    dag = example_dags["example_bqjobs_quickstart"]
    run = run_dag(dag, LOGICAL_DATE)
    assert run.state == "success"
    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    assert set(states.values()) == {"success"} and len(states) == 4
    assert fake_bq.count_jobs() == 4 and len(fake_bq.calls_for("insert")) == 4
    assert fake_bq.unfinished_jobs() == []
    deferred = {j["job_id"] for j in fake_bq.jobs if j["labels"]["airflow-task"] in ("build_daily_totals", "per_region")}
    assert sorted(triggered_jobs) == sorted(deferred) and len(deferred) == 3
    assert fake_bq.job(min(deferred, key=lambda i: "per_region" in i))["labels"]["team"] == "analytics"
    # The label_value filter works in a mapped task's templates too (Airflow renders the unmapped task).
    regions = [j for j in fake_bq.jobs if j["labels"]["airflow-task"] == "per_region"]
    assert len(regions) == 2 and all(j["labels"]["run"] == j["labels"]["airflow-run"] for j in regions)

    again = run_dag(dag, LOGICAL_DATE)
    assert again.state == "success"
    assert fake_bq.count_jobs() == 4 and len(fake_bq.calls_for("insert")) == 4


def _return_values(run, task_id):
    """The return value (XCom) a task of this DAG run left in Airflow's metadata DB."""
    return xcom_values(run, task_id)


def test_lifecycle_cancels_uploads_reruns_lists_and_deletes(example_dags, fake_bq, triggered_jobs, monkeypatch,
                                                           finish_once_deferred):
    # The "other team" task talks to BigQuery with google-cloud-bigquery, without a connection.
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", fake_bq.url)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test-project")
    fake_bq.add_rule(job_id="runaway", running_s=300)  # still running when the cancel comes
    fake_bq.add_rule(job_id="report", running_s=60)  # still running when the sensor starts: it defers
    finish_once_deferred("other_team__report__")
    dag = example_dags["example_bqjobs_lifecycle"]
    run = run_dag(dag, LOGICAL_DATE)
    assert run.state == "success"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert set(states.values()) == {"success"} and len(states) == 9, states

    (other,) = _return_values(run, "start_other_teams_jobs")
    report, runaway = other["report"]["jobId"], other["runaway"]["jobId"]
    assert report.startswith("other_team__report__") and runaway.startswith("other_team__runaway__")
    assert len(fake_bq.calls_for("insert", job_id=runaway, status=200)) == 1
    # The cancel stopped the runaway job; then its metadata was deleted.
    (cancelled,) = _return_values(run, "cancel_runaway")[0]
    assert cancelled["outcome"] == "cancelled" and cancelled["error_result"]["reason"] == "stopped"
    assert len(fake_bq.calls_for("cancel", job_id=runaway)) == 1
    assert fake_bq.job(runaway) is None
    deleted = _return_values(run, "delete_runaway_metadata")[0]
    assert [(e["job"]["jobId"], e["outcome"]) for e in deleted] == [(runaway, "deleted")]
    assert fake_bq.job(report)["state"] == "DONE" and fake_bq.job(report)["error_result"] is None
    # The sensor and the cancel waited in the trigger.
    assert report in triggered_jobs and runaway in triggered_jobs
    # One upload load, its data the file's.
    uploads = fake_bq.calls_for("upload")
    assert len(uploads) == 1
    (load,) = [j for j in fake_bq.jobs if j["labels"].get("airflow-task") == "load_events"]
    assert fake_bq.uploaded_bytes(load["job_id"]) == (EXAMPLES / "data" / "events.json").read_bytes()
    # The list found the three jobs the operators of this run created (load, count, recount).
    listed = _return_values(run, "list_run_jobs")[0]
    assert sorted(j["labels"]["airflow-task"] for j in listed) == ["count_events", "load_events", "recount_events"]
    assert fake_bq.count_jobs() == 4  # report + the 3 above (runaway deleted)
    # The show-job task read the report job without waiting.
    (shown,) = _return_values(run, "show_report_job")
    assert (shown["job_id"], shown["state"]) == (report, "DONE")

    # The same DAG run again: everything reattaches, except the job whose metadata was deleted
    # (that erased its exactly-once record): the other team's runaway job is inserted once more.
    inserted = len(fake_bq.calls_for("insert", status=200))
    again = run_dag(dag, LOGICAL_DATE)
    assert again.state == "success"
    assert [c["job_id"] for c in fake_bq.calls_for("insert", status=200)[inserted:]] == [runaway]
    assert len(fake_bq.calls_for("upload")) == 1 and fake_bq.count_jobs() == 4
