"""One crash point under real Airflow: ``dag.test()`` runs mapped submit tasks (sync and deferrable)
with ``retries=1``; the first try of every task instance dies right after its insert; Airflow's own
retry must reattach to that job.

This also pins the attempt driver to Airflow: the context Airflow gives each try (try_number,
max_tries, task.retries, clear_number, map index, run id) yields the same run identity, hence the same
job ID, as the driver's context for that try.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from airflow_bqjobs.context import run_identity
from airflow_bqjobs.hooks.jobs import BigQueryJobsHook
from airflow_bqjobs.operators._waiting import SUMMARY_XCOM_KEY
from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator
from tests.compat import run_dag, xcoms
from tests.reliability.attempt_driver import SUCCESS, run_attempt
from tests.reliability.audit import base_job_id, jobs_of, reference, succeeded
from tests.reliability.crash_points import Probe
from tests.reliability.environment import CONN_ID, PROJECT
from tests.reliability.scenarios import query_config, submit_task
from tests.reliability.task_context import XComStore, build_context

DAG_ID = "reliability_real_retry"
LOGICAL_DATE = datetime(2026, 3, 1, tzinfo=timezone.utc)
CONFIGS = [query_config("SELECT 'eu'"), query_config("SELECT 'us'")]
TASKS = {"load_sync": False, "load_deferrable": True}  # task_id -> deferrable


class WorkerCrashed(Exception):
    """Stands in for the worker dying after the insert: Airflow fails the try and schedules a retry."""


@pytest.fixture
def crash_after_first_insert(monkeypatch):
    """Every job ID's first insert is applied, then the try that sent it dies."""
    crashed: list[str] = []
    real_insert = BigQueryJobsHook.insert_job

    def insert_then_crash(self, ref, configuration, **kwargs):
        job = real_insert(self, ref, configuration, **kwargs)
        if ref.job_id not in crashed:
            crashed.append(ref.job_id)
            raise WorkerCrashed(f"worker died right after inserting {ref.job_id}")
        return job

    monkeypatch.setattr(BigQueryJobsHook, "insert_job", insert_then_crash)
    return crashed


def build_dag(seen: list):
    from tests.compat import DAG

    def record_context(context):
        ti = context["ti"]
        seen.append({"task_id": ti.task_id, "map_index": ti.map_index, "try_number": ti.try_number,
                     "max_tries": ti.max_tries, "retries": context["task"].retries,
                     "clear_number": context["dag_run"].clear_number, "identity": run_identity(context)})

    with DAG(DAG_ID, schedule=None, start_date=LOGICAL_DATE, catchup=False) as dag:
        for task_id, deferrable in TASKS.items():
            BigQuerySubmitJobOperator.partial(
                task_id=task_id, gcp_conn_id=CONN_ID, project_id=PROJECT, deferrable=deferrable,
                poll_interval=0.05, retries=1, retry_delay=timedelta(0), on_execute_callback=record_context,
            ).expand(configuration=CONFIGS)
    return dag


def xcoms_of(run_id: str) -> dict[tuple[str, int, str], object]:
    return xcoms(SimpleNamespace(dag_id=DAG_ID, run_id=run_id))


def test_airflow_retries_a_try_killed_after_insert_onto_its_job(emulator, register_dag, crash_after_first_insert):
    seen: list[dict] = []
    dag = register_dag(build_dag(seen))

    dag_run = run_dag(dag, LOGICAL_DATE)

    assert str(dag_run.state) == "success"
    instances = [(task_id, m) for task_id in TASKS for m in range(len(CONFIGS))]
    assert sorted({(s["task_id"], s["map_index"], s["try_number"]) for s in seen}) == sorted(
        (t, m, n) for t, m in instances for n in (1, 2))
    assert {(s["max_tries"], s["retries"], s["clear_number"]) for s in seen} == {(1, 1, 0)}
    assert len(crash_after_first_insert) == len(instances)
    assert len(emulator.jobs) == len(instances) and emulator.unfinished_jobs() == []
    xcoms = xcoms_of(dag_run.run_id)

    for task_id, map_index in instances:
        identities = {s["identity"] for s in seen if (s["task_id"], s["map_index"]) == (task_id, map_index)}
        assert len(identities) == 1, identities  # both tries: one identity
        (identity,) = identities
        assert identity.rerun_key is None

        # The driver's context for the same task instance and try gives the same identity and job ID.
        spec = submit_task(task_id, deferrable=TASKS[task_id], dag_id=DAG_ID, run_id=dag_run.run_id,
                           map_index=map_index, configuration=CONFIGS[map_index], retries=1)
        driver_context = build_context(spec.key, spec.make_operator(), try_number=2, max_tries=1, clear_number=0,
                                       xcom=XComStore(), probe=Probe())
        assert run_identity(driver_context) == identity
        base = base_job_id(spec)
        assert base in crash_after_first_insert

        (job,) = jobs_of(emulator.jobs, base)
        assert succeeded(job)
        assert xcoms[(task_id, map_index, "return_value")] == reference(job)
        assert xcoms[(task_id, map_index, SUMMARY_XCOM_KEY)]["job_id"] == base

        # A further try run by the driver lands on the same job and inserts nothing.
        inserts_before = len(emulator.calls_for("insert"))
        attempt = run_attempt(spec, 3, XComStore())
        assert (attempt.outcome, attempt.result) == (SUCCESS, reference(job))
        assert len(emulator.calls_for("insert")) == inserts_before
