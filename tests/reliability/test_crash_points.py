"""Crash-point matrix: kill an attempt at every point of its life, let Airflow's retry run, and check
that the task instance still has exactly one successful job, nothing left running, and that job as
its result. Sync and deferrable; with and without a job failure; user cancellation.
"""

from __future__ import annotations

import pytest

from tests.reliability.attempt_driver import FAILED, KILLED, SUCCESS, patch_task_state_reads, run_task_instance
from tests.reliability.audit import audit_task_run, base_job_id, jobs_of
from tests.reliability.crash_points import POINTS_BEFORE_JOB_DONE, Point, Probe, points_for
from tests.reliability.scenarios import submit_task


@pytest.fixture(autouse=True)
def task_states(monkeypatch):
    """The kill rule reads the task states the driver keeps, as Airflow's metadata DB would hold them
    (before 3.3 a triggerer restart reaches the trigger as a cancel, and the rule reads the state)."""
    patch_task_state_reads(monkeypatch)

CASES = [(deferrable, point) for deferrable in (False, True) for point in points_for(deferrable)]
CASE_IDS = [f"{'deferrable' if d else 'sync'}-{p}" for d, p in CASES]


def acted_inserts(fake, base: str) -> list[str]:
    """Job IDs of this task instance that a jobs.insert actually created."""
    return [c["job_id"] for c in fake.calls_for("insert")
            if c["acted_status"] == 200 and c["job_id"].startswith(base)]


class FrozenUntilKilled:
    """Holds the fake's clock still during the try that is to die, so the job is provably unfinished
    at points before DONE; the world moves on once the try is over."""

    def __init__(self, fake, point: Point, killed_try: int):
        self.fake, self.point, self.killed_try = fake, point, killed_try
        if killed_try == 1:
            self.hold()

    def hold(self) -> None:
        if self.point in POINTS_BEFORE_JOB_DONE:
            self.fake.clock.freeze()

    def __call__(self, attempt) -> None:
        if attempt.try_number == self.killed_try - 1:
            self.hold()
        elif attempt.try_number == self.killed_try:
            self.fake.clock.unfreeze()


@pytest.mark.parametrize(("deferrable", "point"), CASES, ids=CASE_IDS)
def test_killed_try_is_retried_onto_the_same_job(emulator, deferrable, point):
    spec = submit_task("load_orders", deferrable=deferrable)
    base = base_job_id(spec)

    run = run_task_instance(spec, probes={1: Probe(kill_at=point)},
                            between_attempts=FrozenUntilKilled(emulator, point, killed_try=1))

    assert [(a.try_number, a.outcome, a.killed_at) for a in run.attempts] == [
        (1, KILLED, point), (2, SUCCESS, None)]
    jobs = jobs_of(emulator.jobs, base)
    assert [j["job_id"] for j in jobs] == [base]
    assert acted_inserts(emulator, base) == [base]
    if point is Point.BEFORE_INSERT:
        assert run.attempts[0].reached == [Point.BEFORE_INSERT]  # try 1 died with nothing sent
    audit = audit_task_run(run, jobs, failed_generations=0)
    assert audit.ok, audit.problems
    assert emulator.unfinished_jobs() == []


@pytest.mark.parametrize(("deferrable", "point"), CASES, ids=CASE_IDS)
def test_failed_job_reruns_generation_1_once_even_if_that_try_is_killed(emulator, deferrable, point):
    """Try 1: the job fails. Try 2 runs generation _1 and dies at ``point``. Try 3 follows _1.
    (A mapped task instance, so the map index is part of what keeps its jobs apart.)"""
    spec = submit_task("load_orders", deferrable=deferrable, map_index=3)
    base = base_job_id(spec)
    emulator.add_rule(job_id=f"^{base}$", error={"reason": "jobBackendError", "message": "backend hiccup"})

    run = run_task_instance(spec, probes={2: Probe(kill_at=point)},
                            between_attempts=FrozenUntilKilled(emulator, point, killed_try=2))

    assert [(a.try_number, a.outcome, a.killed_at) for a in run.attempts] == [
        (1, FAILED, None), (2, KILLED, point), (3, SUCCESS, None)]
    assert "jobBackendError" in str(run.attempts[0].error)
    jobs = jobs_of(emulator.jobs, base)
    assert [(j["job_id"], (j["error_result"] or {}).get("reason")) for j in jobs] == [
        (base, "jobBackendError"), (f"{base}_1", None)]
    assert sorted(acted_inserts(emulator, base)) == [base, f"{base}_1"]
    audit = audit_task_run(run, jobs, failed_generations=1)
    assert audit.ok, audit.problems
    assert emulator.unfinished_jobs() == []


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_triggerer_restart_mid_wait_keeps_the_try_on_its_job(emulator, deferrable):
    """Not a kill: the trigger is rebuilt from its stored kwargs and the same try goes on (deferrable),
    or nothing happens at all (sync: there is no triggerer)."""
    spec = submit_task("load_orders", deferrable=deferrable)
    base = base_job_id(spec)

    run = run_task_instance(spec, probes={1: Probe(restart_triggerer=True)})

    assert [(a.try_number, a.outcome) for a in run.attempts] == [(1, SUCCESS)]
    assert run.attempts[0].triggerer_restarts == (1 if deferrable else 0)
    jobs = jobs_of(emulator.jobs, base)
    assert len(jobs) == 1 and acted_inserts(emulator, base) == [base]
    assert audit_task_run(run, jobs, failed_generations=0).ok


def cancel_job_action(bq_client, seen: list):
    def cancel(job):
        ref = job["jobReference"]
        seen.append(ref["jobId"])
        bq_client.cancel_job(ref["jobId"], project=ref["projectId"], location=ref["location"])
    return cancel


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_job_cancelled_by_user_is_rerun_once_under_generation_1(emulator, bq_client, deferrable):
    spec = submit_task("load_orders", deferrable=deferrable)
    base = base_job_id(spec)
    cancelled: list[str] = []

    run = run_task_instance(spec, probes={1: Probe(actions={Point.WHILE_WAITING: cancel_job_action(bq_client, cancelled)})})

    assert cancelled == [base]
    assert [(a.try_number, a.outcome) for a in run.attempts] == [(1, FAILED), (2, SUCCESS)]
    assert "stopped" in str(run.attempts[0].error)
    jobs = jobs_of(emulator.jobs, base)
    assert [(j["job_id"], (j["error_result"] or {}).get("reason")) for j in jobs] == [
        (base, "stopped"), (f"{base}_1", None)]
    assert audit_task_run(run, jobs, failed_generations=1).ok
    assert emulator.unfinished_jobs() == []


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_job_cancelled_by_user_stays_cancelled_without_rerun_cancelled(emulator, bq_client, deferrable):
    spec = submit_task("load_orders", deferrable=deferrable, retries=2, rerun_cancelled=False)
    base = base_job_id(spec)
    cancelled: list[str] = []

    run = run_task_instance(spec, probes={1: Probe(actions={Point.WHILE_WAITING: cancel_job_action(bq_client, cancelled)})})

    assert run.state == FAILED
    assert [(a.try_number, a.outcome) for a in run.attempts] == [(1, FAILED), (2, FAILED), (3, FAILED)]
    assert all("stopped" in str(a.error) for a in run.attempts)
    assert [(j["job_id"], j["state"], j["error_result"]["reason"]) for j in jobs_of(emulator.jobs, base)] == [
        (base, "DONE", "stopped")]
    assert acted_inserts(emulator, base) == [base]
    assert emulator.unfinished_jobs() == []


def hide_job_once(fake, bq_client):
    """BigQuery may answer 404 for a job that exists (eventual consistency, e.g. right after a 409):
    a duplicate insert of the job arms the fake's 404_after_409 for the next read of it."""
    from google.api_core.exceptions import Conflict

    def action(job):
        ref = job["jobReference"]
        fake.inject("404_after_409", "insert", count=1)
        with pytest.raises(Conflict):
            bq_client._connection.api_request(
                method="POST", path=f"/projects/{ref['projectId']}/jobs",
                data={"jobReference": ref, "configuration": job["configuration"]})
    return action


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_a_brief_not_found_while_waiting_does_not_fail_the_try(emulator, bq_client, deferrable):
    """With retries=0 a spurious failure would leave the job running with no task to report it."""
    spec = submit_task("load_orders", deferrable=deferrable, retries=0)
    base = base_job_id(spec)

    run = run_task_instance(spec, probes={1: Probe(actions={Point.WHILE_WAITING: hide_job_once(emulator, bq_client)})})

    assert emulator.fault_counts.get("404_after_409") == 1
    # One 404 says the ID is free (before the insert), the other is the injected one.
    assert [c["status"] for c in emulator.calls_for("get", job_id=base)].count(404) == 2
    assert [(a.try_number, a.outcome) for a in run.attempts] == [(1, SUCCESS)], run.final.error
    assert audit_task_run(run, jobs_of(emulator.jobs, base), failed_generations=0).ok


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_a_job_gone_for_good_while_waiting_still_fails_the_try(emulator, bq_client, monkeypatch, deferrable):
    """The other side of that tolerance: a job whose metadata is deleted stays unreadable, and after the
    re-reads the try fails saying so (it does not wait forever)."""
    import airflow_bqjobs.core.attach as attach
    import airflow_bqjobs.triggers.job as trigger_module

    quick = (0.01, 0.02, 0.04)
    monkeypatch.setattr(attach, "READ_AFTER_CONFLICT_DELAYS", quick)
    monkeypatch.setattr(trigger_module, "READ_AFTER_CONFLICT_DELAYS", quick)
    emulator.set_defaults(cancel_s=0)
    spec = submit_task("load_orders", deferrable=deferrable, retries=0)
    base = base_job_id(spec)

    def cancel_and_delete(job):
        bq_client.cancel_job(base, location="US")
        bq_client.delete_job_metadata(base, location="US")

    run = run_task_instance(spec, probes={1: Probe(actions={Point.WHILE_WAITING: cancel_and_delete})})

    assert run.state == FAILED
    assert ("was not found" if deferrable else "disappeared while waiting") in str(run.final.error)
    gets_after_delete = [c["status"] for c in emulator.calls_for("get", job_id=base)][-(len(quick) + 1):]
    assert gets_after_delete == [404] * (len(quick) + 1)
