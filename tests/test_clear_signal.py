"""Issue 7, case 1: the rerun (clear) signal comes from this task instance's own clear only.

Every transition goes through Airflow's own code on a real DAG run in the SQLite metadata DB:
``create_dagrun``, ``DagRun.schedule_tis`` (which numbers the tries), ``TaskInstance.handle_failure``
(a try that died after its insert: ``up_for_retry``), and the clears themselves
(``clear_task_instances`` with its default run reset, the DAG's ``clear(only_failed=True)``, one map
index). Each try's context carries what Airflow's ``ti_run`` hands the worker (try_number, max_tries,
the run's clear_number), read back from the DB. What differs per version is in tests/compat.py
(the scheduler's DAG object, ``create_dagrun``, and whether a clear of a running run counts).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_bqjobs.hooks.jobs import BigQueryJobsHook
from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator
from tests.airflow_context import make_context
from tests.airflow_run import Run
from tests.compat import CLEAR_OF_A_RUNNING_RUN_COUNTS

# What clear_number a clear of this (running) DAG run leaves: counted from Airflow 3.2 on.
RESET = 1 if CLEAR_OF_A_RUNNING_RUN_COUNTS else 0

D = datetime(2026, 3, 1, tzinfo=timezone.utc)
CONFIGS = [{"query": {"query": f"SELECT {n}", "useLegacySql": False}} for n in range(3)]


class WorkerDied(Exception):
    """The try's worker died right after BigQuery accepted its insert."""


@pytest.fixture
def die_after_insert(monkeypatch):
    real_insert = BigQueryJobsHook.insert_job

    def insert_then_die(self, ref, configuration, **kwargs):
        real_insert(self, ref, configuration, **kwargs)
        raise WorkerDied(ref.job_id)

    monkeypatch.setattr(BigQueryJobsHook, "insert_job", insert_then_die)


def attempt(op, context):
    """Run one try of the operator; returns the job IDs it inserted, '' when it died after inserting."""
    try:
        op.execute(context)
    except WorkerDied as died:
        return str(died)
    return None


def submit(task_id, **kw):
    return BigQuerySubmitJobOperator(task_id=task_id, project_id="test-project", deferrable=False, poll_interval=0.05,
                                     retries=2, retry_delay=timedelta(minutes=5), **kw)


def job_ids(fake_bq):
    return sorted(j["job_id"] for j in fake_bq.jobs)


def build(register_dag, dag_id, mapped=False, other_retries=2, **kw):
    from tests.compat import DAG

    with DAG(dag_id, schedule=None, start_date=D, catchup=False) as dag:
        other = submit("other", configuration=CONFIGS[0])
        other.retries = other_retries
        if mapped:
            query = BigQuerySubmitJobOperator.partial(
                task_id="query", project_id="test-project", deferrable=False, poll_interval=0.05, retries=2,
                retry_delay=timedelta(minutes=5)).expand(configuration=CONFIGS)
        else:
            query = submit("query", configuration=CONFIGS[1], **kw)
    register_dag(dag)
    ops = {"other": other, "query": query}
    if mapped:  # the operator each map index runs, as Airflow unmaps it
        ops["query"] = None
    return dag, ops


def test_clearing_another_task_does_not_rekey_a_task_waiting_for_its_retry(emulator, register_dag, die_after_insert):
    dag, ops = build(register_dag, "case1_other_task")
    run = Run(dag, ops)
    first = attempt(ops["query"], run.start_try("query"))
    run.fail_try("query")
    assert run.state("query") == "up_for_retry" and job_ids(emulator) == [first]

    run.clear_task_instances(("other",))  # the user clears *another* task; Airflow resets the run
    assert run.clear_number() == RESET

    retry = run.start_try("query")
    assert retry["ti"].try_number == 2 and retry["dag_run"].clear_number == RESET
    assert ops["query"].build_job(retry)[0].job_id == first
    assert attempt(ops["query"], retry) is None  # reattached: no insert, so no crash
    assert job_ids(emulator) == [first]


def test_clear_failed_only_does_not_rekey_a_task_waiting_for_its_retry(emulator, register_dag, die_after_insert):
    dag, ops = build(register_dag, "case1_failed_only", other_retries=0)
    run = Run(dag, ops)
    broken = attempt(ops["other"], run.start_try("other"))
    run.fail_try("other")
    assert run.state("other") == "failed"
    first = attempt(ops["query"], run.start_try("query"))
    run.fail_try("query")
    assert run.state("query") == "up_for_retry"

    run.clear_failed_only()
    assert run.state("other") is None and run.state("query") == "up_for_retry" and run.clear_number() == RESET

    retry = run.start_try("query")
    assert ops["query"].build_job(retry)[0].job_id == first
    assert attempt(ops["query"], retry) is None
    # the cleared task itself gets a new job on its next try
    again = run.start_try("other")
    assert ops["other"].build_job(again)[0].job_id != broken
    assert job_ids(emulator) == sorted([broken, first])


def test_clearing_one_map_index_does_not_rekey_its_siblings_waiting_to_retry(emulator, register_dag, die_after_insert):
    dag, ops = build(register_dag, "case1_mapped", mapped=True)
    run = Run(dag, ops)
    mapped = dag.get_task("query")

    def operator(map_index):
        return submit("query", configuration=CONFIGS[map_index])  # as Airflow unmaps index map_index

    firsts = {}
    for m in range(3):
        run.ops["query"] = operator(m)
        firsts[m] = attempt(run.ops["query"], run.start_try("query", m))
        run.fail_try("query", m)
    assert mapped.partial_kwargs["retries"] == 2
    assert {run.state("query", m) for m in range(3)} == {"up_for_retry"}

    run.clear_task_instances(("query", 1))

    for m in range(3):
        run.ops["query"] = operator(m)
        retry = run.start_try("query", m)
        job_id = run.ops["query"].build_job(retry)[0].job_id
        assert (job_id == firsts[m]) == (m != 1), m  # only the cleared map index gets a new job
    assert len(emulator.jobs) == 3


def test_clearing_the_task_itself_rekeys_it_and_its_retries_keep_the_new_job(emulator, register_dag, die_after_insert):
    dag, ops = build(register_dag, "case1_itself")
    run = Run(dag, ops)
    first = attempt(ops["query"], run.start_try("query"))
    run.fail_try("query")

    run.clear_task_instances(("query",))

    cleared = run.start_try("query")
    second = attempt(ops["query"], cleared)
    assert second and second != first
    run.fail_try("query")
    retry = run.start_try("query")  # a retry after the clear follows the cleared try's job
    assert ops["query"].build_job(retry)[0].job_id == second
    assert job_ids(emulator) == sorted([first, second])


def test_a_never_cleared_task_instance_keeps_its_id(emulator, register_dag):
    dag, ops = build(register_dag, "case1_never_cleared")
    run = Run(dag, ops)
    context = run.start_try("query")
    assert context["ti"].max_tries == 2
    ref = ops["query"].build_job(context)[0]
    # the ID main derived for a never-cleared, never-reset run (rerun_key None) is unchanged
    assert ref.job_id == ops["query"].build_job(make_context(ops["query"], run_id=run.run_id))[0].job_id
    ops["query"].reattach_on_clear = True
    assert ops["query"].build_job(context)[0] == ref
