"""The provider in a real Airflow 3 deployment (issue 4, item 5).

PostgreSQL metadata DB; scheduler (LocalExecutor, parallelism 4), dag-processor, api-server and
triggerer as separate processes; DAG runs triggered and task instances changed through the REST API
(``/api/v2``, no token); BigQuery is ``tests.fakebq`` in its own process. See conftest.py for the set-up
and dags/bqjobs_deployment_dags.py for the DAGs (one deferrable BigQuerySubmitJobOperator each).

1. A deferred submit task completes through the real triggerer.
2. SIGKILL of the triggerer mid-wait, then a new triggerer: the task still completes with one job,
   never cancelled.
3. Marking the deferred task failed through the REST API cancels its job (the trigger's ``on_kill``).
4. Two triggerers; the one running the trigger is stalled (SIGSTOP) past the triggerer health-check
   threshold, the other takes the trigger over; resumed (SIGCONT), the stalled one finds the trigger
   reassigned, cancels it through Airflow's user-action path and calls ``on_kill``: the job is left
   running, and the task completes with one job, never cancelled.

Every wait polls with a timeout; nothing sleeps to let something happen.
Run: ``bash scripts/deployment_test.sh`` (= ``bash scripts/test.sh -m deployment tests/deployment``).
"""

from __future__ import annotations

import re
import time
import urllib.parse

import pytest

from airflow_bqjobs._compat import TRIGGER_ON_KILL
from tests.compat import requires_airflow
from tests.deployment.harness import Deployment, note, record_timing

pytestmark = pytest.mark.deployment

TASK_ID = "submit"
FOREVER_S = 3600  # the "runs forever" jobs' running_s, as in the DAG file
FINISHED = ("success", "failed", "upstream_failed", "skipped", "removed")

# Bounds (seconds) on the waits; a healthy run takes a fraction of each.
TASK_DEFERRED_TIMEOUT = 120  # trigger the run -> task deferred (scheduling + worker start-up)
TRIGGER_POLL_TIMEOUT = 60  # deferred -> the trigger polls the job
TAKEOVER_TIMEOUT = 90  # triggerer SIGKILL -> a new triggerer polls the job (heartbeat threshold 10 s)
TASK_DONE_TIMEOUT = 120  # trigger fired -> task instance finished (resume on a worker)
CANCEL_TIMEOUT = 45  # PATCH failed -> job DONE/stopped ([triggerer] on_kill_timeout is 30 s)

# Which DAG each test runs, for the diagnostics that conftest attaches to a failed test's report.
DAG_UNDER_TEST = {
    "test_deferred_task_completes_through_the_triggerer": "bqjobs_deploy_complete",
    "test_triggerer_killed_mid_wait_then_restarted_completes_with_one_job": "bqjobs_deploy_triggerer_restart",
    "test_marking_deferred_task_failed_cancels_its_job": "bqjobs_deploy_mark_failed",
    "test_triggerer_takeover_completes_with_one_job_never_cancelled": "bqjobs_deploy_takeover",
}


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


class TaskWatch:
    """One DAG run triggered through the REST API, and the states its ``submit`` task went through."""

    def __init__(self, dep: Deployment, dag_id: str):
        self.dep = dep
        self.dag_id = dag_id
        self.triggered_at = time.monotonic()
        run = dep.airflow.api("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None})
        self.run_id = run["dag_run_id"]
        self.states: list[tuple[float, str | None, int]] = []  # (seconds since trigger, state, try_number)

    @property
    def path(self) -> str:
        return f"/dags/{self.dag_id}/dagRuns/{_q(self.run_id)}/taskInstances/{TASK_ID}"

    def ti(self) -> dict:
        ti = self.dep.airflow.api("GET", self.path)
        if not self.states or self.states[-1][1:] != (ti["state"], ti["try_number"]):
            self.states.append((round(time.monotonic() - self.triggered_at, 1), ti["state"], ti["try_number"]))
        return ti

    def seen(self, state: str) -> bool:
        return any(s == state for _, s, _ in self.states)

    def wait(self, predicate, timeout: float, what: str) -> dict:
        """Poll the task instance until ``predicate(ti)``; returns it. Fails early if it finished otherwise."""

        def check():
            ti = self.ti()
            if predicate(ti):
                return ti
            if ti["state"] in FINISHED:
                raise AssertionError(f"{self.dag_id}: task finished as {ti['state']} while waiting for {what}; "
                                     f"states {self.states}")
            return None

        return self.dep.airflow.wait_for(check, timeout, lambda: f"{self.dag_id}: {what} (states {self.states})")

    def wait_state(self, state: str, timeout: float) -> dict:
        return self.wait(lambda ti: ti["state"] == state, timeout, f"task state {state}")

    def wait_finished(self, timeout: float) -> dict:
        return self.dep.airflow.wait_for(lambda: (ti := self.ti())["state"] in FINISHED and ti, timeout,
                                         lambda: f"{self.dag_id}: task to finish (states {self.states})")

    # -- the task's BigQuery job(s), as the fake saw them ----------------------------------------

    def jobs(self) -> list[dict]:
        """Every job any attempt of this DAG's task inserted (each test DAG runs once per session)."""
        return [j for j in self.dep.fake.jobs
                if j["labels"].get("airflow-dag") == self.dag_id and j["labels"].get("airflow-task") == TASK_ID]

    def the_job(self, timeout: float = 30) -> dict:
        jobs = self.dep.airflow.wait_for(self.jobs, timeout, f"{self.dag_id}: a job in the fake")
        assert len(jobs) == 1, f"expected exactly one job, got {[j['job_id'] for j in jobs]}"
        return jobs[0]

    def job_calls(self, job_id: str, endpoint: str, since: float = 0.0) -> list[dict]:
        return [c for c in self.dep.fake.calls_for(endpoint, job_id=job_id) if c["time"] >= since]

    def wait_polled(self, job_id: str, since: float, timeout: float, what: str) -> dict:
        """Until a triggerer checks ``job_id`` at or after wall time ``since``: its shared poller's
        ``jobs.list`` shows the job (while it runs), or a ``jobs.get`` reads it."""
        def checked():
            calls = [c for c in self.dep.fake.calls if c["time"] >= since and (
                (c["endpoint"] == "get" and c["job_id"] == job_id)
                or (c["endpoint"] == "list" and job_id in c.get("listed", ())))]
            return calls and calls[0]

        return self.dep.airflow.wait_for(checked, timeout, f"{self.dag_id}: {what}")

    # -- trigger logs: ``attempt=N.log.trigger.<TriggererJob id>.log`` ---------------------------

    def trigger_logs(self) -> dict[int, str]:
        """TriggererJob id -> its log lines for this task (written by the triggerer that ran the trigger)."""
        out = {}
        for name, text in self.dep.airflow.task_log_files(self.dag_id).items():
            match = re.search(r"\.log\.trigger\.(\d+)\.log$", name)
            if match and f"run_id={self.run_id}" in name:
                out[int(match.group(1))] = text
        return out


def _note_retries(watch: TaskWatch, ti: dict) -> None:
    """A second try is allowed (retries=1, for Airflow's instant-trigger race) but reported."""
    if ti["try_number"] != 1:
        note(f"{watch.dag_id}: the task needed try {ti['try_number']} (known Airflow race?): states {watch.states}")


def test_deferred_task_completes_through_the_triggerer(deployment: Deployment):
    watch = TaskWatch(deployment, "bqjobs_deploy_complete")
    watch.wait_state("deferred", TASK_DEFERRED_TIMEOUT)
    deferred_at = time.monotonic()
    record_timing("1. complete: trigger run -> task deferred", deferred_at - watch.triggered_at)

    ti = watch.wait_finished(TASK_DONE_TIMEOUT)
    record_timing("1. complete: deferred -> task success (job runs 6 s)", time.monotonic() - deferred_at)
    assert ti["state"] == "success", f"states {watch.states}"
    assert watch.seen("deferred"), f"the task never deferred: states {watch.states}"

    job = watch.the_job()
    assert job["state"] == "DONE" and job["error_result"] is None, job
    assert not job["cancel_requested"], job

    # The trigger ran in our triggerer process: its log is named after that triggerer's job id.
    triggerer_job = deployment.triggerer_job_ids[deployment.airflow.components["triggerer"].pid]
    logs = watch.trigger_logs()
    assert list(logs) == [triggerer_job], f"trigger logs by triggerer job: {list(logs)}, expected [{triggerer_job}]"
    assert "Trigger fired event" in logs[triggerer_job] and job["job_id"] in logs[triggerer_job]
    _note_retries(watch, ti)
    record_timing("1. complete: scenario total", time.monotonic() - watch.triggered_at)


def test_triggerer_killed_mid_wait_then_restarted_completes_with_one_job(deployment: Deployment):
    airflow, fake = deployment.airflow, deployment.fake
    watch = TaskWatch(deployment, "bqjobs_deploy_triggerer_restart")
    watch.wait_state("deferred", TASK_DEFERRED_TIMEOUT)
    job_id = watch.the_job()["job_id"]
    old_pid = airflow.components["triggerer"].pid
    old_job = deployment.triggerer_job_ids[old_pid]
    # The old triggerer is waiting on the job: it polled it after the task deferred.
    watch.wait_polled(job_id, time.time(), TRIGGER_POLL_TIMEOUT, "the first triggerer to poll the job")
    assert watch.ti()["state"] == "deferred"

    killed_at = time.time()
    t_kill = time.monotonic()
    killed = airflow.kill("triggerer")
    assert old_pid in killed
    assert fake.job(job_id)["state"] == "RUNNING"

    try:
        new = airflow.start("triggerer")
        new_job = deployment.wait_new_triggerer_job(new.pid)
        assert new_job != old_job
        # The new triggerer rebuilt the trigger and polls the same job (no killed process is left to).
        watch.wait_polled(job_id, time.time(), TAKEOVER_TIMEOUT, "the new triggerer to poll the job")
        record_timing("2. restart: SIGKILL triggerer -> new triggerer polls the job", time.monotonic() - t_kill)
        assert watch.ti()["state"] == "deferred", f"states {watch.states}"
        snapshot = fake.job(job_id)
        assert snapshot["state"] == "RUNNING" and not snapshot["cancel_requested"], snapshot

        fake.clock.advance(FOREVER_S)  # the job finishes now
        t_done = time.monotonic()
        ti = watch.wait_finished(TASK_DONE_TIMEOUT)
        record_timing("2. restart: job DONE -> task success", time.monotonic() - t_done)
    finally:  # leave a working deployment for the next test, whatever failed here
        if not airflow.components.get("triggerer") or not airflow.components["triggerer"].alive():
            deployment.wait_new_triggerer_job(airflow.start("triggerer").pid)

    assert ti["state"] == "success", f"states {watch.states}"
    _note_retries(watch, ti)
    job = fake.job(job_id)
    assert len(watch.jobs()) == 1, [j["job_id"] for j in watch.jobs()]
    assert job["state"] == "DONE" and job["error_result"] is None, job
    assert not job["cancel_requested"] and not watch.job_calls(job_id, "cancel"), "the job was cancelled"
    logs = watch.trigger_logs()
    assert set(logs) == {old_job, new_job}, f"trigger logs by triggerer job: {sorted(logs)}"
    assert "Trigger fired event" in logs[new_job]
    assert "Trigger fired event" not in logs[old_job]
    assert watch.job_calls(job_id, "get", since=killed_at), "no jobs.get after the kill"
    record_timing("2. restart: scenario total", time.monotonic() - watch.triggered_at)


@requires_airflow("3.3", "the trigger's on_kill; before 3.3 the state check cancels: test_kill_without_on_kill.py")
def test_marking_deferred_task_failed_cancels_its_job(deployment: Deployment):
    airflow, fake = deployment.airflow, deployment.fake
    airflow.assert_running("triggerer")
    watch = TaskWatch(deployment, "bqjobs_deploy_mark_failed")
    watch.wait_state("deferred", TASK_DEFERRED_TIMEOUT)
    job_id = watch.the_job()["job_id"]
    watch.wait_polled(job_id, time.time(), TRIGGER_POLL_TIMEOUT, "the triggerer to poll the job")
    assert fake.job(job_id)["state"] == "RUNNING"

    patched_at = time.time()
    t_patch = time.monotonic()
    body = airflow.api("PATCH", watch.path, {"new_state": "failed"})
    changed = body.get("task_instances", [body]) if isinstance(body, dict) else body
    assert [ti["state"] for ti in changed] == ["failed"], body

    stopped = airflow.wait_for(
        lambda: (job := fake.job(job_id))["state"] == "DONE" and job, CANCEL_TIMEOUT,
        lambda: f"job {job_id} to be cancelled (now {fake.job(job_id)['state']}; "
                f"cancel calls {len(watch.job_calls(job_id, 'cancel'))})")
    record_timing("3. mark failed: PATCH failed -> job DONE/stopped", time.monotonic() - t_patch)
    assert (stopped["error_result"] or {}).get("reason") == "stopped", stopped
    assert stopped["cancel_requested"]
    cancels = watch.job_calls(job_id, "cancel", since=patched_at)
    assert len(cancels) == 1, cancels

    # Airflow's own log line: the triggerer cancelled the trigger for a user action and called on_kill.
    triggerer_job = deployment.triggerer_job_ids[airflow.components["triggerer"].pid]
    log = airflow.wait_for(lambda: watch.trigger_logs().get(triggerer_job, "").count("invoking on_kill") and
                           watch.trigger_logs()[triggerer_job], 30, "the trigger log to show on_kill")
    assert "Requested cancellation of job" in log and job_id in log

    ti = watch.ti()
    assert ti["state"] == "failed" and ti["try_number"] == 1, f"states {watch.states}"
    assert len(watch.jobs()) == 1
    record_timing("3. mark failed: scenario total", time.monotonic() - watch.triggered_at)


def _signal_tree(component, sig: int) -> list[int]:
    procs = component.tree()
    for proc in procs:
        proc.send_signal(sig)
    return [p.pid for p in procs]


def test_triggerer_takeover_completes_with_one_job_never_cancelled(deployment: Deployment):
    import signal as signals

    airflow, fake = deployment.airflow, deployment.fake
    airflow.assert_running("triggerer")
    second = airflow.start("triggerer-2")
    stalled = None
    try:
        deployment.wait_new_triggerer_job(second.pid)
        watch = TaskWatch(deployment, "bqjobs_deploy_takeover")
        watch.wait_state("deferred", TASK_DEFERRED_TIMEOUT)
        job_id = watch.the_job()["job_id"]
        watch.wait_polled(job_id, time.time(), TRIGGER_POLL_TIMEOUT, "a triggerer to poll the job")
        owner_job = airflow.wait_for(lambda: list(watch.trigger_logs()), 30, "the trigger's log")[0]
        by_job = {job: pid for pid, job in deployment.triggerer_job_ids.items()}
        owner = next(c for c in (airflow.components["triggerer"], second) if c.pid == by_job[owner_job])
        other_job = next(job for job in by_job if job != owner_job and by_job[job] in
                         (airflow.components["triggerer"].pid, second.pid))

        stalled_at = time.time()
        t_stall = time.monotonic()
        stalled = owner
        _signal_tree(owner, signals.SIGSTOP)  # no heartbeat, no polls: as a hung host or a deadlocked loop
        airflow.wait_for(lambda: other_job in watch.trigger_logs(), TAKEOVER_TIMEOUT,
                         "the other triggerer to take the trigger over")
        watch.wait_polled(job_id, time.time(), TAKEOVER_TIMEOUT, "the other triggerer to poll the job")
        record_timing("4. takeover: SIGSTOP triggerer -> the other polls the job", time.monotonic() - t_stall)

        _signal_tree(owner, signals.SIGCONT)
        stalled = None
        # Resumed, the old triggerer sees the trigger assigned elsewhere: Airflow cancels it as a user
        # action and calls on_kill, which reads the task (still deferred) and leaves the job running.
        log = airflow.wait_for(lambda: "left running" in (text := watch.trigger_logs().get(owner_job, "")) and text,
                               60, "the resumed triggerer to stop the trigger and leave the job running")
        if TRIGGER_ON_KILL:  # 3.3 calls on_kill on a reassigned trigger; before, it only cancels it
            assert "invoking on_kill" in log, log[-2000:]
        snapshot = fake.job(job_id)
        assert snapshot["state"] == "RUNNING" and not snapshot["cancel_requested"], snapshot
        assert watch.ti()["state"] == "deferred", f"states {watch.states}"

        fake.clock.advance(FOREVER_S)  # the job finishes now
        ti = watch.wait_finished(TASK_DONE_TIMEOUT)
    finally:
        if stalled is not None:
            _signal_tree(stalled, signals.SIGCONT)
        airflow.components.pop("triggerer-2", None)
        second.stop()
        airflow.retired.append(second)
        if not airflow.components["triggerer"].alive():
            deployment.wait_new_triggerer_job(airflow.start("triggerer").pid)

    assert ti["state"] == "success", f"states {watch.states}"
    _note_retries(watch, ti)
    job = fake.job(job_id)
    assert len(watch.jobs()) == 1, [j["job_id"] for j in watch.jobs()]
    assert job["state"] == "DONE" and job["error_result"] is None, job
    assert not job["cancel_requested"] and not watch.job_calls(job_id, "cancel"), "the job was cancelled"
    assert "Trigger fired event" in watch.trigger_logs()[other_job]
    assert watch.job_calls(job_id, "get", since=stalled_at)
    record_timing("4. takeover: scenario total", time.monotonic() - watch.triggered_at)
