"""BigQueryListJobsOperator(airflow_dag_id=, airflow_run_id=, airflow_task_id=): the jobs an Airflow
run created, found by the labels the submit operator wrote (sanitised alike); real HTTP to the fake."""

import pytest

from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.operators import BigQueryListJobsOperator, BigQuerySubmitJobOperator
from tests.airflow_context import make_context

RUN_A = "manual__2026-01-01T00:00:00+00:00"
RUN_B = "scheduled__2026-01-02T00:00:00+00:00"

pytestmark = pytest.mark.usefixtures("emulator")


def submit(task_id, run_id):
    op = BigQuerySubmitJobOperator(task_id=task_id, project_id="test-project", deferrable=False, poll_interval=0.05,
                                   configuration={"query": {"query": f"SELECT '{task_id}'", "useLegacySql": False}})
    op.execute(make_context(op, run_id=run_id))
    return op


def listing(context_run_id=RUN_A, **kw):
    op = BigQueryListJobsOperator(task_id="list", project_id="test-project", max_results=None, **kw)
    context = make_context(op, run_id=context_run_id)
    op.render_template_fields(context)
    return sorted(s["labels"]["airflow-task"] + "@" + s["labels"]["airflow-run"] for s in op.execute(context))


@pytest.fixture
def two_runs(fake_bq):
    fake_bq.add_rule(pending_s=0, running_s=0)
    for run_id in (RUN_A, RUN_B):
        for task_id in ("extract", "load"):
            submit(task_id, run_id)
    assert len(fake_bq.jobs) == 4


def test_jobs_of_one_dag_run_by_its_raw_run_id(two_runs):
    assert listing(airflow_dag_id="test_dag", airflow_run_id=RUN_A) == [
        "extract@manual__2026-01-01t00_00_00_00_00", "load@manual__2026-01-01t00_00_00_00_00"
    ]


def test_jobs_of_one_task_of_one_run(two_runs):
    assert listing(airflow_run_id=RUN_B, airflow_task_id="load") == ["load@scheduled__2026-01-02t00_00_00_00_00"]


def test_the_current_run_through_templates(two_runs):
    assert listing(context_run_id=RUN_B, airflow_dag_id="{{ ti.dag_id }}", airflow_run_id="{{ run_id }}") == [
        "extract@scheduled__2026-01-02t00_00_00_00_00", "load@scheduled__2026-01-02t00_00_00_00_00"
    ]


def test_every_job_of_the_dag(two_runs):
    assert len(listing(airflow_dag_id="test_dag")) == 4 and listing(airflow_dag_id="other_dag") == []


def test_combines_with_labels_and_refuses_a_contradiction(two_runs):
    assert listing(airflow_task_id="load", labels={"airflow-dag": "test_dag"}) == [
        "load@manual__2026-01-01t00_00_00_00_00", "load@scheduled__2026-01-02t00_00_00_00_00"
    ]
    with pytest.raises(InvalidJobInput, match="airflow_dag_id: 'test_dag' .* contradicts labels"):
        BigQueryListJobsOperator(task_id="list", airflow_dag_id="test_dag", labels={"airflow-dag": "x"})
