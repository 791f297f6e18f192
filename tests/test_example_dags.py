"""The example DAGs under real Airflow (``dag.test()``, deferrable tasks run their trigger in line)
against the HTTP fake: every task succeeds, deferrable ones really defer, and running the same DAG
run again creates no job."""

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "example_dags"
LOGICAL_DATE = datetime(2025, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def example_dags(airflow_db, fake_bq, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    extra = {"project": "test-project", "emulator_host": fake_bq.url}
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps({"conn_type": "bigquery_jobs", "extra": extra}))
    bag = DagBag(dag_folder=str(EXAMPLES))
    assert bag.import_errors == {}
    return bag.dags


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


def test_quickstart_defers_succeeds_and_reruns_without_new_jobs(example_dags, fake_bq, triggered_jobs):
    fake_bq.add_rule(running_s=1.5)  # long enough for the deferrable tasks to really defer
    dag = example_dags["example_bqjobs_quickstart"]
    run = dag.test(logical_date=LOGICAL_DATE, run_after=LOGICAL_DATE)
    assert run.state == "success"
    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    assert set(states.values()) == {"success"} and len(states) == 4
    assert fake_bq.count_jobs() == 4 and len(fake_bq.calls_for("insert")) == 4
    assert fake_bq.unfinished_jobs() == []
    deferred = {j["job_id"] for j in fake_bq.jobs if j["labels"]["airflow-task"] in ("build_daily_totals", "per_region")}
    assert sorted(triggered_jobs) == sorted(deferred) and len(deferred) == 3
    assert fake_bq.job(min(deferred, key=lambda i: "per_region" in i))["labels"]["team"] == "analytics"

    again = dag.test(logical_date=LOGICAL_DATE, run_after=LOGICAL_DATE)
    assert again.state == "success"
    assert fake_bq.count_jobs() == 4 and len(fake_bq.calls_for("insert")) == 4
