"""The kill path of an Airflow without trigger ``on_kill`` (< 3.3), in a real deployment.

Before 3.3 a user marking a deferred task failed and a triggerer shutting down look the same to the
trigger: its task is cancelled. The trigger then reads its task instance's state (through the
triggerer's supervisor and the API server on 3.x): no longer ``deferred`` -> cancel the job; still
``deferred`` -> leave it running for the next triggerer (airflow_bqjobs/triggers/job.py). Here both
happen in the real triggerer of the deployment of tests/deployment/conftest.py, on the Airflow of the
venv (``BQJOBS_AIRFLOW=3.2 bash scripts/deployment_test.sh``; .ci/run runs it on 3.2):

1. a deferred task marked failed through the REST API: its job is DONE ``stopped`` within seconds,
   cancelled by the trigger's state check (3.3 takes ``on_kill`` instead: test_real_deployment.py);
2. the triggerer stopped gracefully (SIGTERM) mid-wait, then a new one started: the job is never
   cancelled and the task completes with that one job (on every version).
"""

from __future__ import annotations

import time

import pytest

from tests.compat import TRIGGER_ON_KILL
from tests.deployment.harness import Deployment, note, record_timing
from tests.deployment.test_real_deployment import (
    CANCEL_TIMEOUT,
    TAKEOVER_TIMEOUT,
    TASK_DEFERRED_TIMEOUT,
    TASK_DONE_TIMEOUT,
    TRIGGER_POLL_TIMEOUT,
    TaskWatch,
)

pytestmark = pytest.mark.deployment

STATE_KILL_DAG = "bqjobs_deploy_state_kill"
GRACEFUL_RESTART_DAG = "bqjobs_deploy_graceful_restart"
FOREVER_S = 3600  # as in dags/bqjobs_deployment_kill_dags.py
DAG_UNDER_TEST = {  # for the diagnostics conftest attaches to a failed test
    "test_marking_deferred_task_failed_cancels_its_job_by_the_state_check": STATE_KILL_DAG,
    "test_triggerer_stopped_gracefully_mid_wait_leaves_the_job_running": GRACEFUL_RESTART_DAG,
}


@pytest.fixture(scope="module")
def deployment_with_kill_dags(deployment: Deployment) -> Deployment:
    """The session's deployment, with this module's DAGs parsed and unpaused."""
    airflow = deployment.airflow

    def parsed():
        found = {d["dag_id"] for d in airflow.api("GET", "/dags?dag_id_pattern=bqjobs_deploy&limit=100")["dags"]}
        return {STATE_KILL_DAG, GRACEFUL_RESTART_DAG} <= found

    airflow.wait_for(parsed, 120, "the kill DAGs to be parsed")
    for dag_id in (STATE_KILL_DAG, GRACEFUL_RESTART_DAG):
        airflow.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})
    return deployment


def _deferred_and_polled(dep: Deployment, dag_id: str) -> tuple[TaskWatch, str]:
    watch = TaskWatch(dep, dag_id)
    watch.wait_state("deferred", TASK_DEFERRED_TIMEOUT)
    job_id = watch.the_job()["job_id"]
    watch.wait_polled(job_id, time.time(), TRIGGER_POLL_TIMEOUT, "the triggerer to poll the job")
    assert dep.fake.job(job_id)["state"] == "RUNNING"
    return watch, job_id


@pytest.mark.skipif(TRIGGER_ON_KILL, reason="Airflow >= 3.3 calls the trigger's on_kill on a user action (tested by "
                    "test_real_deployment.py::test_marking_deferred_task_failed_cancels_its_job); no state check")
def test_marking_deferred_task_failed_cancels_its_job_by_the_state_check(deployment_with_kill_dags: Deployment):
    dep = deployment_with_kill_dags
    airflow, fake = dep.airflow, dep.fake
    watch, job_id = _deferred_and_polled(dep, STATE_KILL_DAG)

    patched_at = time.time()
    t_patch = time.monotonic()
    body = airflow.api("PATCH", watch.path, {"new_state": "failed"})
    changed = body.get("task_instances", [body]) if isinstance(body, dict) else body
    assert [ti["state"] for ti in changed] == ["failed"], body

    stopped = airflow.wait_for(
        lambda: (job := fake.job(job_id))["state"] == "DONE" and job, CANCEL_TIMEOUT,
        lambda: f"job {job_id} to be cancelled (now {fake.job(job_id)['state']}; "
                f"cancel calls {len(watch.job_calls(job_id, 'cancel'))})")
    record_timing("kill without on_kill: PATCH failed -> job DONE/stopped", time.monotonic() - t_patch)
    assert (stopped["error_result"] or {}).get("reason") == "stopped", stopped
    assert len(watch.job_calls(job_id, "cancel", since=patched_at)) == 1

    # The trigger's own log line: it read the task's state and cancelled for that reason.
    triggerer_job = dep.triggerer_job_ids[airflow.components["triggerer"].pid]
    log = airflow.wait_for(lambda: "task is failed" in (text := watch.trigger_logs().get(triggerer_job, "")) and text,
                           30, "the trigger log to show the state-check cancel")
    assert f"Requested cancellation of job {job_id}" in log or job_id in log
    ti = watch.ti()
    assert ti["state"] == "failed" and ti["try_number"] == 1, f"states {watch.states}"
    assert len(watch.jobs()) == 1


def test_triggerer_stopped_gracefully_mid_wait_leaves_the_job_running(deployment_with_kill_dags: Deployment):
    """A SIGTERM (redeploy, scale-in) cancels every trigger task: the job must survive it."""
    dep = deployment_with_kill_dags
    airflow, fake = dep.airflow, dep.fake
    watch, job_id = _deferred_and_polled(dep, GRACEFUL_RESTART_DAG)
    old_pid = airflow.components["triggerer"].pid
    old_job = dep.triggerer_job_ids[old_pid]

    stopped_at = time.time()
    t_stop = time.monotonic()
    component = airflow.components.pop("triggerer")
    killed = component.stop()
    airflow.retired.append(component)
    record_timing("graceful restart: SIGTERM -> triggerer exited", time.monotonic() - t_stop)
    if killed:
        note(f"graceful restart: the triggerer needed SIGKILL for {killed}")
    try:
        snapshot = fake.job(job_id)
        assert snapshot["state"] == "RUNNING" and not snapshot["cancel_requested"], snapshot
        assert not watch.job_calls(job_id, "cancel"), "the job was cancelled on a triggerer shutdown"
        assert watch.ti()["state"] == "deferred", f"states {watch.states}"
        old_log = watch.trigger_logs().get(old_job, "")
        left = [line for line in old_log.splitlines() if "left running" in line]
        note(f"graceful restart: the stopped trigger logged {left[-1][-160:] if left else 'no state check'}")

        new = airflow.start("triggerer")
        new_job = dep.wait_new_triggerer_job(new.pid)
        watch.wait_polled(job_id, time.time(), TAKEOVER_TIMEOUT, "the new triggerer to poll the job")
        record_timing("graceful restart: SIGTERM -> new triggerer polls the job", time.monotonic() - t_stop)
        assert fake.job(job_id)["state"] == "RUNNING"

        fake.clock.advance(FOREVER_S)  # the job finishes now
        ti = watch.wait_finished(TASK_DONE_TIMEOUT)
    finally:  # leave a working deployment for the next test, whatever failed here
        if not airflow.components.get("triggerer") or not airflow.components["triggerer"].alive():
            dep.wait_new_triggerer_job(airflow.start("triggerer").pid)

    assert ti["state"] == "success", f"states {watch.states}"
    assert len(watch.jobs()) == 1, [j["job_id"] for j in watch.jobs()]
    job = fake.job(job_id)
    assert job["state"] == "DONE" and job["error_result"] is None and not job["cancel_requested"], job
    assert not watch.job_calls(job_id, "cancel") and watch.job_calls(job_id, "get", since=stopped_at)
    assert "Trigger fired event" in watch.trigger_logs().get(new_job, "")
