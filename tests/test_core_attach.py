"""The attach-or-run loop against an in-memory jobs API (the HTTP fake covers the transport)."""

import threading

import pytest

from airflow_bqjobs.core.attach import attach_or_run
from airflow_bqjobs.core.decision import Action
from airflow_bqjobs.core.errors import JobAlreadyExists, JobNotVisible
from airflow_bqjobs.core.job_ref import JobRef

BASE = JobRef("base_0123456789abcdef0123", "p", "US")


class MemoryApi:
    def __init__(self, jobs=None, hidden_reads=0):
        self.jobs = dict(jobs or {})
        self.inserts = []
        self.hidden_reads = hidden_reads  # reads that answer "not found" although the job exists
        self.lock = threading.Lock()

    def get_job(self, ref):
        with self.lock:
            if self.hidden_reads and ref.job_id in self.jobs:
                self.hidden_reads -= 1
                return None
            return self.jobs.get(ref.job_id)

    def insert(self, ref):
        with self.lock:
            if ref.job_id in self.jobs:
                raise JobAlreadyExists(f"Already Exists: Job {ref}")
            job = {"jobReference": ref.to_api(), "status": {"state": "RUNNING"}}
            self.jobs[ref.job_id] = job
            self.inserts.append(ref.job_id)
            return job


def done(error=None):
    status = {"state": "DONE"}
    if error:
        status["errorResult"] = {"reason": error, "message": "x"}
    return {"status": status}


def run(api, **kw):
    return attach_or_run(api, BASE, api.insert, sleep=lambda s: None, **kw)


def test_fresh_run_inserts_generation_zero():
    api = MemoryApi()
    outcome = run(api)
    assert (outcome.action, outcome.ref.job_id, outcome.generation) == (Action.INSERT, BASE.job_id, 0)
    assert api.inserts == [BASE.job_id]


def test_running_job_is_reattached():
    api = MemoryApi({BASE.job_id: {"status": {"state": "RUNNING"}}})
    outcome = run(api)
    assert outcome.action is Action.ATTACH and api.inserts == []


def test_succeeded_job_is_the_result():
    api = MemoryApi({BASE.job_id: done()})
    assert run(api).action is Action.SUCCEED and api.inserts == []


def test_failed_job_runs_next_generation_and_the_next_retry_finds_it():
    api = MemoryApi({BASE.job_id: done("invalid")})
    first = run(api)
    assert (first.action, first.ref.job_id) == (Action.INSERT, BASE.job_id + "_1")
    second = run(api)
    assert (second.action, second.ref.job_id) == (Action.ATTACH, BASE.job_id + "_1")
    assert api.inserts == [BASE.job_id + "_1"]


def test_walks_several_failed_generations():
    api = MemoryApi({BASE.job_id: done("invalid"), BASE.job_id + "_1": done("stopped"), BASE.job_id + "_2": done()})
    outcome = run(api)
    assert (outcome.action, outcome.generation) == (Action.SUCCEED, 2)


def test_cancelled_job_fails_when_user_chose_not_to_rerun():
    api = MemoryApi({BASE.job_id: done("stopped")})
    assert run(api, rerun_cancelled=False).action is Action.FAIL
    assert api.inserts == []


def test_lost_race_reads_the_winner():
    api = MemoryApi()
    winner = {"status": {"state": "RUNNING"}}
    real_get = api.get_job
    calls = []

    def get_then_race(ref):
        result = real_get(ref)
        if not calls:  # another attempt inserts right after our first read
            api.jobs[ref.job_id] = winner
        calls.append(ref)
        return result

    api.get_job = get_then_race
    outcome = run(api)
    assert outcome.action is Action.ATTACH and outcome.job is winner and api.inserts == []


def test_404_right_after_409_is_retried():
    api = MemoryApi({BASE.job_id: {"status": {"state": "RUNNING"}}}, hidden_reads=3)
    outcome = run(api)
    assert outcome.action is Action.ATTACH and api.inserts == []


def test_409_but_never_readable_is_a_clear_error():
    api = MemoryApi({BASE.job_id: {"status": {"state": "RUNNING"}}}, hidden_reads=100)
    with pytest.raises(JobNotVisible, match="location"):
        run(api)


def test_generation_cap():
    api = MemoryApi({BASE.job_id if g == 0 else f"{BASE.job_id}_{g}": done("invalid") for g in range(3)})
    with pytest.raises(RuntimeError, match="3 generations"):
        run(api, max_generations=3)


def test_concurrent_attempts_insert_exactly_one_job():
    api = MemoryApi()
    outcomes = []
    barrier = threading.Barrier(8)

    def attempt():
        barrier.wait()
        outcomes.append(run(api))

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(api.inserts) == 1
    assert sorted(o.action.value for o in outcomes).count("insert") == 1
    assert {o.ref.job_id for o in outcomes} == {BASE.job_id}
