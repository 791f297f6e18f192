"""Issue 7, case 3 through Airflow's real Task SDK supervisor (3.3): heartbeats, 410/409, SIGTERM.

``supervise_task`` forks the task runner, which runs the DAG file's sync submit task; the supervisor
heartbeats the in-process execution API (the triggerer's and dag-processor's way of reaching it)
over the test session's metadata DB. Once the task polls its job, the task instance is moved on by
Airflow's own functions: ``handle_failure`` (what the scheduler does to a try whose heartbeat
stopped: a zombie, up_for_retry under a new id, so the next heartbeat gets 410) or a user's mark
failed (409). The supervisor then SIGTERMs the task runner, whose handler calls ``on_kill``; the
operator asks for the task's state through the supervisor's channel while the supervisor waits for
it to exit.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.airflow_run import Run
from tests.compat import in_process_execution_api
from tests.test_cancel_on_kill import polled, the_job, wait_until

# The Task SDK supervisor is Airflow 3's: 3.3 calls it ``supervise_task``, 3.0-3.2 ``supervise``.
pytest.importorskip("airflow.sdk.execution_time.supervisor",
                    reason="needs Airflow >= 3.0: the Task SDK supervisor (2.11's LocalTaskJob heartbeats differently)")

DAG_FILE = Path(__file__).parent / "supervised_dags" / "bqjobs_supervised.py"


@pytest.fixture
def supervised(emulator, register_dag, monkeypatch):
    import importlib.util

    from airflow.sdk.execution_time import supervisor

    emulator.set_defaults(pending_s=0, running_s=120)
    monkeypatch.setattr(supervisor, "MIN_HEARTBEAT_INTERVAL", 1)
    spec = importlib.util.spec_from_file_location("bqjobs_supervised", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {dag_id: register_dag(dag) for dag_id, dag in module.DAGS.items()}


def task_workload(**fields):
    """The executor's task workload as each 3.x names it, with the fields that version has."""
    try:
        from airflow.executors.workloads.task import TaskInstanceDTO as workload  # 3.3
    except ImportError:
        from airflow.executors.workloads import TaskInstance as workload  # 3.0-3.2
    return workload(**{name: value for name, value in fields.items() if name in workload.model_fields})


def run_under_supervisor(fake_bq, dag, move_on) -> int:
    from airflow.sdk.api.client import Client
    from airflow.sdk.api.datamodels._generated import BundleInfo
    from airflow.sdk.execution_time import supervisor
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    run = Run(dag, {"query": dag.get_task("query")})
    run.start_try("query")
    with create_session() as session:
        ti = run._ti(session, "query")
        ti.state = TaskInstanceState.QUEUED
        dto = task_workload(id=ti.id, task_id=ti.task_id, dag_id=ti.dag_id, run_id=ti.run_id,
                            try_number=ti.try_number, dag_version_id=ti.dag_version_id, map_index=ti.map_index,
                            pool_slots=1, priority_weight=1, queue="default")
    client = Client(base_url=None, token="", dry_run=True, transport=in_process_execution_api().transport)
    client.base_url = "http://in-process.invalid./"
    failures = []

    def act():
        try:
            job_id = wait_until(lambda: fake_bq.jobs and the_job(fake_bq)["job_id"], 60, "the insert")
            wait_until(lambda: polled(fake_bq, job_id), 30, "the task to poll its job")
            move_on(run)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    supervise = getattr(supervisor, "supervise_task", None) or supervisor.supervise  # 3.3 / 3.0-3.2
    exit_code = supervise(ti=dto, bundle_info=BundleInfo(name="dags-folder", version=None),
                          dag_rel_path=str(Path("..") / "tests" / "supervised_dags" / DAG_FILE.name),
                          token="", client=client)
    thread.join(10)
    assert not failures, failures
    return exit_code


def zombie(run):
    from airflow.utils.session import create_session

    with create_session() as session:
        run._ti(session, "query").handle_failure("Task instance heartbeat timed out", session=session)


def test_zombie_try_killed_by_the_supervisor_leaves_the_job_to_its_retry(fake_bq, supervised):
    exit_code = run_under_supervisor(fake_bq, supervised["bqjobs_supervised_zombie"], zombie)
    assert exit_code != 0
    assert fake_bq.calls_for("cancel") == []
    assert the_job(fake_bq)["state"] == "RUNNING"


def test_user_mark_failed_killed_by_the_supervisor_cancels_the_job(fake_bq, supervised):
    exit_code = run_under_supervisor(fake_bq, supervised["bqjobs_supervised_marked"],
                                     lambda run: run.mark("query", "failed"))
    assert exit_code != 0
    job = wait_until(lambda: (j := the_job(fake_bq))["state"] == "DONE" and j, 15, "the job to stop")
    assert job["error_result"]["reason"] == "stopped" and len(fake_bq.calls_for("cancel")) == 1
