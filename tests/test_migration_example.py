"""The Google provider's BigQuery example DAG, rewritten with our operator
(tests/migration/example_bigquery_queries_bqjobs.py), under real Airflow (``dag.test()``) against
the fake: every task succeeds with one job each, in the example's location, with the example's
configurations; running the same DAG run again starts no job (Google's default ``force_rerun=True``
would start every one of them again)."""

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.compat import run_dag
from tests.pacing import check_often

MIGRATED = Path(__file__).resolve().parent / "migration" / "example_bigquery_queries_bqjobs.py"
LOGICAL_DATE = datetime(2026, 6, 1, tzinfo=timezone.utc)


@pytest.fixture
def migrated_dag(register_dag, fake_bq, monkeypatch):
    from tests.compat import dag_bag

    extra = {"project": "test-project", "emulator_host": fake_bq.url}
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps({"conn_type": "bigquery_jobs", "extra": extra}))
    bag = dag_bag(MIGRATED)
    assert bag.import_errors == {}
    dag = bag.dags["bigquery_queries_bqjobs"]
    for task in dag.tasks:  # dag.test() waits out retry delays: no 5 minutes between tries here
        task.retry_delay = timedelta(0)
    check_often(dag)  # nor 1 s or more between checks of a job
    return register_dag(dag)


def test_the_google_example_runs_with_one_job_per_task_and_reruns_none(migrated_dag, fake_bq):
    run = run_dag(migrated_dag, LOGICAL_DATE)
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert set(states.values()) == {"success"} and len(states) == 11, states

    jobs = {j["labels"]["airflow-task"]: j for j in fake_bq.jobs_with_prefix("airflow_bigquery_queries_bqjobs_")}
    assert sorted(jobs) == sorted(states)  # one job per task
    assert {j["location"] for j in jobs.values()} == {"us-east1"}
    insert = jobs["insert_query_job"]["resource"]["configuration"]["query"]
    assert insert["priority"] == "BATCH" and insert["query"].startswith("INSERT dataset_bigquery_queries_bqjobs_")
    select = jobs["select_query_job"]["resource"]["configuration"]["query"]["query"]
    assert select.strip() == "SELECT * FROM dataset_bigquery_queries_bqjobs_default.table1"  # {% include %}
    saved = jobs["execute_query_save"]["resource"]["configuration"]["query"]["destinationTable"]
    assert saved == {"projectId": "test-project", "datasetId": "dataset_bigquery_queries_bqjobs_default",
                     "tableId": "table2"}
    assert len(jobs["execute_multi_query"]["child_job_ids"]) == 2  # one script, two statements
    before = len(fake_bq.calls_for("insert"))

    again = run_dag(migrated_dag, LOGICAL_DATE)
    assert {str(ti.state) for ti in again.get_task_instances()} == {"success"}
    assert len(fake_bq.calls_for("insert")) == before  # every job found DONE: nothing re-run, nothing billed


def test_a_failing_assert_fails_its_task_like_a_check_operator(migrated_dag, fake_bq):
    fake_bq.add_rule(job_id="_check_value_", error={"reason": "invalidQuery", "message": "expected 4 rows"})
    run = run_dag(migrated_dag, LOGICAL_DATE)
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states["check_value"] == "failed" and states["delete_dataset"] == "success"  # ALL_DONE teardown
    check_jobs = [j for j in fake_bq.jobs if j["labels"].get("airflow-task") == "check_value"]
    assert len(check_jobs) == 3  # retries=2: a failed job is re-run under the next generation, once per try
