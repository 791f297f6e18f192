"""Issue 7 cases 2 and 6 in the pure attach-or-run loop: the generation walk and regional jobs.

The in-memory API counts reads and knows BigQuery's location rule (a regional job is not found
without its location); the HTTP fake covers the same over the wire (tests/test_regional_and_generations.py).
"""

import pytest

from airflow_bqjobs.core.attach import attach_or_run, find_latest_generation, generation_of
from airflow_bqjobs.core.decision import Action
from airflow_bqjobs.core.errors import JobAlreadyExists, JobNotVisible
from airflow_bqjobs.core.job_id import generation_job_id
from airflow_bqjobs.core.job_ref import JobRef

BASE = JobRef("airflow_d_t_r_0123456789abcdef0123", "p", "US")


def gen(g, base=BASE):
    return generation_job_id(base.job_id, g)


class CountingApi:
    """Jobs by ID with a location; ``get_job`` without a location finds only US/EU jobs."""

    def __init__(self, jobs=None, location="US"):
        self.jobs = {}
        self.location = location
        for job_id, job in (jobs or {}).items():
            self.add(job_id, job)
        self.reads = 0
        self.inserts = []
        self.located = 0

    def add(self, job_id, job):
        self.jobs[job_id] = {**job, "jobReference": {"projectId": "p", "jobId": job_id, "location": self.location}}

    def get_job(self, ref):
        self.reads += 1
        job = self.jobs.get(ref.job_id)
        if job is None:
            return None
        where = job["jobReference"]["location"]
        if ref.location is None and where not in ("US", "EU") or ref.location not in (None, where):
            return None
        return job

    def insert(self, ref):
        if ref.job_id in self.jobs:
            raise JobAlreadyExists(f"Already Exists: Job {ref}")
        self.add(ref.job_id, {"status": {"state": "RUNNING"}})
        self.inserts.append(ref.job_id)
        return self.jobs[ref.job_id]

    def locate(self, base):  # what jobs.list across all locations gives
        self.located += 1
        for job_id, job in self.jobs.items():
            if generation_of(job_id, base.job_id) is not None:
                return job["jobReference"]["location"]
        return None


def failed():
    return {"status": {"state": "DONE", "errorResult": {"reason": "invalid", "message": "x"}}}


def succeeded():
    return {"status": {"state": "DONE"}}


def run(api, base=BASE, **kw):
    return attach_or_run(api, base, api.insert, sleep=lambda s: None, locate=api.locate, **kw)


def test_generation_of_recognises_only_generations_of_the_base():
    assert generation_of(BASE.job_id, BASE.job_id) == 0
    assert generation_of(BASE.job_id + "_12", BASE.job_id) == 12
    assert generation_of(BASE.job_id + "_012", BASE.job_id) is None
    assert generation_of(BASE.job_id + "x_1", BASE.job_id) is None
    assert generation_of("other_1", BASE.job_id) is None


def test_case6_generations_fifty_failing_tries_cost_two_reads_each():
    """Try k (bound k - 1) reads the bound (404) and the one below (failed), inserts the next: 2 reads,
    where walking up from _0 cost k reads (1,275 for 50 tries)."""
    api = CountingApi()
    reads_per_try = []
    for try_number in range(1, 52):
        before = api.reads
        outcome = run(api, bound=try_number - 1)
        assert (outcome.action, outcome.generation) == (Action.INSERT, try_number - 1)
        api.jobs[outcome.ref.job_id]["status"] = failed()["status"]
        reads_per_try.append(api.reads - before)
    assert reads_per_try[0] == 1 and set(reads_per_try[1:]) == {2}
    assert sum(reads_per_try[:50]) == 99


def test_case6_generations_gap_never_reruns_an_earlier_generation():
    """_0 failed and its metadata was deleted; _1 succeeded. A later try must take _1, not insert _0."""
    api = CountingApi({gen(1): succeeded()})
    outcome = run(api, bound=2)
    assert (outcome.action, outcome.generation) == (Action.SUCCEED, 1)
    assert api.inserts == []


def test_case6_generations_gap_below_a_failed_generation_runs_the_next_one():
    api = CountingApi({gen(0): failed(), gen(2): failed()})  # _1 deleted
    outcome = run(api, bound=3)
    assert (outcome.action, outcome.ref.job_id) == (Action.INSERT, gen(3))


def test_case6_generations_underestimated_bound_probes_upward():
    """The bound may be too low (e.g. ``retries`` edited): if it exists, read upward until a 404."""
    api = CountingApi({gen(0): failed(), gen(1): failed(), gen(2): {"status": {"state": "RUNNING"}}})
    outcome = run(api, bound=0)
    assert (outcome.action, outcome.generation) == (Action.ATTACH, 2)
    assert api.reads == 4 and api.inserts == []


def test_case6_generations_walk_reads_at_most_bound_plus_one():
    api = CountingApi({gen(0): {"status": {"state": "RUNNING"}}})
    assert find_latest_generation(api, BASE, 5)[0] == 0
    assert api.reads == 6
    assert find_latest_generation(CountingApi(), BASE, 0) == (-1, None)


def test_case6_generations_concurrent_insert_of_the_next_generation_is_read():
    api = CountingApi({gen(0): failed()})
    real_insert = api.insert

    def lose_race(ref):
        api.add(ref.job_id, {"status": {"state": "RUNNING"}})  # another try inserted it first
        api.insert = real_insert
        return real_insert(ref)

    outcome = attach_or_run(api, BASE, lose_race, bound=1, sleep=lambda s: None)
    assert (outcome.action, outcome.generation) == (Action.ATTACH, 1)


REGIONAL = JobRef(BASE.job_id, "p", None)


def test_case2_regional_first_try_reports_the_location_bigquery_chose():
    api = CountingApi(location="europe-west2")
    outcome = run(api, REGIONAL, bound=0)
    assert outcome.action is Action.INSERT and outcome.ref.location == "europe-west2"
    assert api.located == 0  # a first try pays no jobs.list


def test_case2_regional_retry_that_lost_the_location_finds_its_job():
    api = CountingApi({gen(0): {"status": {"state": "RUNNING"}}}, location="europe-west2")
    outcome = run(api, REGIONAL, bound=1)
    assert (outcome.action, outcome.ref.location) == (Action.ATTACH, "europe-west2")
    assert api.inserts == [] and api.located == 1


def test_case2_multi_region_retry_without_location_pays_no_jobs_list():
    api = CountingApi({gen(0): {"status": {"state": "RUNNING"}}}, location="US")
    outcome = run(api, REGIONAL, bound=1)
    assert (outcome.action, outcome.ref.location, api.located) == (Action.ATTACH, "US", 0)


def test_case2_regional_409_whose_read_answers_404_locates_the_job():
    """A first try (bound 0, e.g. ``airflow tasks test``) meets an existing regional job."""
    api = CountingApi({gen(0): failed()}, location="europe-west2")
    outcome = run(api, REGIONAL, bound=0)
    assert (outcome.action, outcome.ref) == (Action.INSERT, JobRef(gen(1), "p", "europe-west2"))
    assert api.inserts == [gen(1)]


def test_case2_regional_gap_without_location_never_reruns_generation_zero():
    api = CountingApi({gen(1): succeeded()}, location="asia-northeast1")
    outcome = run(api, REGIONAL, bound=2)
    assert (outcome.action, outcome.generation, outcome.ref.location) == (Action.SUCCEED, 1, "asia-northeast1")
    assert api.inserts == []


def test_case2_regional_409_that_cannot_be_located_names_location():
    api = CountingApi({gen(0): {"status": {"state": "RUNNING"}}}, location="europe-west2")
    api.locate = lambda base: None  # e.g. the job belongs to another account
    with pytest.raises(JobNotVisible, match="location"):
        run(api, REGIONAL, bound=0)
    assert api.inserts == []
