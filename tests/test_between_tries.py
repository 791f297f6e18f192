"""Issue 7 case 9: what may change between tries: the connection's location or project, a run
re-executed by ``airflow tasks test``, and a re-run's source job finishing meanwhile."""

from argparse import Namespace

import pendulum
import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_bqjobs.operators.rerun import BigQueryRerunJobOperator
from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator
from tests.airflow_context import make_context
from tests.reliability.environment import set_connection

QUERY = {"query": {"query": "SELECT 1", "useLegacySql": False}}
D = pendulum.datetime(2026, 3, 1, tz="UTC")


def submit(**kw):
    kw.setdefault("retries", 2)
    kw.setdefault("task_id", "t")
    return BigQuerySubmitJobOperator(configuration=QUERY, gcp_conn_id="bq_case9", poll_interval=0.05, **kw)


@pytest.fixture
def connection(fake_bq, monkeypatch):
    from tests.emulator import fast_retries

    fast_retries(monkeypatch)

    def set_extras(**extra):
        set_connection(monkeypatch, "bq_case9", {"emulator_host": fake_bq.url, "project": "test-project", **extra})

    return set_extras


def test_case9_location_changed_in_the_connection_between_tries_follows_the_job(fake_bq, connection):
    """Try 1 ran in EU and died while deferred; the connection now says asia-northeast1. The ID is
    unique per project, so the insert gets a 409 and the read in the new location a 404: the job is
    found with jobs.list and followed where it is, not reported as JobNotVisible, nothing inserted."""
    connection(location="EU")
    fake_bq.add_rule(running_s=0.5)
    op = submit(deferrable=True)
    with pytest.raises(TaskDeferred):
        op.execute(make_context(op, try_number=1))
    connection(location="asia-northeast1")
    retry = submit()
    ref = retry.execute(make_context(retry, try_number=2))
    (job,) = fake_bq.jobs
    assert ref == {"projectId": "test-project", "location": "EU", "jobId": job["job_id"]}


def test_case9_project_changed_in_the_connection_between_tries_is_a_new_job_there(fake_bq, connection):
    """Job IDs are unique per project: a retry in another project cannot see, nor be refused by, the
    first project's job. This is a limit (README, "What changes between tries"): the retry runs the
    job in the new project; the old one keeps running in its own."""
    connection(project="test-project")
    fake_bq.clock.freeze()
    fake_bq.add_rule(running_s=5)
    op = submit(deferrable=True)
    with pytest.raises(TaskDeferred):
        op.execute(make_context(op, try_number=1))
    connection(project="other-project")
    retry = submit(deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        retry.execute(make_context(retry, try_number=2))
    assert deferred.value.trigger.serialize()[1]["job"]["projectId"] == "other-project"
    assert sorted(j["project"] for j in fake_bq.jobs) == ["other-project", "test-project"]


def test_case9_airflow_tasks_test_on_an_existing_run_runs_its_own_job(fake_bq, connection, register_dag,
                                                                        monkeypatch, capsys, caplog):
    """`airflow tasks test` (Airflow's own task_test) on a run whose job succeeded: it used to
    "succeed" from the old job without running anything; now it runs a job of its own and leaves
    the run's job alone. Only 3.3's task_test exports AIRFLOW_TEST_MODE (2.11 to 3.2: only with
    --env-vars): on 2.11 the task sees test_mode in its context (and task_test names the run argument
    execution_date_or_run_id and has no bundle_name); on 3.0 to 3.2 task_test runs it in its own
    thread, under task_test's frame."""
    from airflow.cli.commands.task_command import task_test

    from tests.compat import AIRFLOW_V3, DAG, run_dag, task_log_lines

    connection()
    monkeypatch.setenv("AIRFLOW_TEST_MODE", "False")  # task_test sets it: restored after the test
    with DAG("bqjobs_case9_tasks_test", schedule=None) as dag:
        submit(task_id="submit", retries=0)
    register_dag(dag)
    run = run_dag(dag, D)
    assert run.state == "success" and fake_bq.count_jobs() == 1
    (original,) = fake_bq.jobs
    args = {"logical_date_or_run_id": run.run_id, "bundle_name": None} if AIRFLOW_V3 else \
        {"execution_date_or_run_id": run.run_id, "dry_run": False, "subdir": None}
    task_test(Namespace(dag_id=dag.dag_id, task_id="submit", map_index=-1, env_vars=None, task_params=None,
                        post_mortem=False, **args), dag=dag)
    assert fake_bq.count_calls("insert") == 2
    jobs = {j["job_id"]: j for j in fake_bq.jobs}
    assert len(jobs) == 2 and jobs[original["job_id"]]["resource"] == original["resource"]
    # (2.11's task_test prints through its secrets masker, which may have learnt "airflow" as a secret)
    assert any("tasks test: running a new job" in line for line in task_log_lines(capsys, caplog))


def test_case9_rerun_derives_the_same_id_from_a_running_and_a_done_source(fake_bq, connection):
    """The re-run operator reads its source job on every try: RUNNING on try 1, DONE on try 2. What it
    resubmits (and hashes) is the source's configuration without server-filled fields, which BigQuery
    does not change when the job finishes: the same ID, one re-run job."""
    connection()
    fake_bq.clock.freeze()
    fake_bq.add_rule(job_id="^source$", pending_s=0, running_s=10)
    source = submit(job_id="source", deferrable=True)
    with pytest.raises(TaskDeferred):
        source.execute(make_context(source))
    rerun = BigQueryRerunJobOperator(task_id="rerun", source_job="source", gcp_conn_id="bq_case9", retries=2,
                                     deferrable=True)
    with pytest.raises(TaskDeferred) as first:
        rerun.execute(make_context(rerun, try_number=1))
    assert fake_bq.job("source")["state"] == "RUNNING"
    fake_bq.clock.advance(20)
    assert fake_bq.job("source")["state"] == "DONE"
    fake_bq.clock.unfreeze()
    ref = BigQueryRerunJobOperator(task_id="rerun", source_job="source", gcp_conn_id="bq_case9", retries=2,
                                   poll_interval=0.05).execute(make_context(rerun, try_number=2))
    assert ref["jobId"] == first.value.trigger.serialize()[1]["job"]["jobId"]
    assert fake_bq.count_calls("insert") == 2
