"""Issue 7 cases 2 (regional jobs without a location) and 6 (generations), over real HTTP.

The fake applies BigQuery's location rule: outside the US and EU multi-regions, jobs.get without the
job's location answers 404, and an insert without one runs where the data lives (a fake rule's
``location``) and answers with ``jobReference.location`` filled in.
"""

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_bqjobs.core.errors import JobFailed, JobNotVisible
from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator
from tests.airflow_context import first_event, make_context, rebuild_trigger
from tests.compat import task_log_lines

QUERY = {"query": {"query": "SELECT 1", "useLegacySql": False}}
REGION = "europe-west2"

pytestmark = pytest.mark.usefixtures("emulator")


def submit(deferrable=False, **kw):
    kw.setdefault("retries", 60)
    return BigQuerySubmitJobOperator(
        task_id="regional", configuration=QUERY, project_id="test-project", deferrable=deferrable,
        poll_interval=0.05, **kw,
    )


def defer(op, context):
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    return deferred.value


def resume(op, context, deferred):
    return getattr(op, deferred.method_name)(context, first_event(rebuild_trigger(deferred.trigger)))


@pytest.fixture
def regional(fake_bq):
    """Every job's data lives in europe-west2; jobs run 0.5 s."""
    fake_bq.set_defaults(location=REGION, running_s=0.5)
    return fake_bq


# -- case 2 ------------------------------------------------------------------------------------


def test_case2_regional_sync_first_try_follows_the_location_bigquery_reports(regional, capsys, caplog):
    op = submit()
    context = make_context(op)
    ref = op.execute(context)
    (job,) = regional.jobs
    assert ref == {"projectId": "test-project", "location": REGION, "jobId": job["job_id"]}
    assert job["state"] == "DONE" and context["ti"].xcom["job_summary"]["location"] == REGION
    assert any(f"Inserted job test-project:{REGION}.{job['job_id']}" in line for line in task_log_lines(capsys, caplog))
    assert regional.count_calls("list") == 0  # a first try pays no jobs.list


def test_case2_regional_deferrable_first_try_hands_the_location_to_the_trigger(regional):
    op = submit(deferrable=True)
    context = make_context(op)
    deferred = defer(op, context)
    assert deferred.trigger.serialize()[1]["job"]["location"] == REGION
    ref = resume(op, context, deferred)
    assert ref["location"] == REGION and context["ti"].xcom["job_summary"]["location"] == REGION


@pytest.mark.parametrize("retry_deferrable", [False, True], ids=["sync_retry", "deferrable_retry"])
def test_case2_regional_retry_that_lost_the_location_reattaches(regional, retry_deferrable):
    """Try 1 inserted and died while deferred (the location lived only in its trigger); try 2 knows
    no location: it finds its job with jobs.list, follows it, and inserts nothing."""
    op = submit(deferrable=True)
    defer(op, make_context(op, try_number=1))
    retry = submit(deferrable=retry_deferrable)
    context = make_context(retry, try_number=2)
    ref = resume(retry, context, defer(retry, context)) if retry_deferrable else retry.execute(context)
    (job,) = regional.jobs
    assert ref == {"projectId": "test-project", "location": REGION, "jobId": job["job_id"]}
    assert regional.count_calls("insert") == 1 and job["state"] == "DONE"


def test_case2_regional_retry_after_a_failed_generation_runs_the_next_once(regional):
    regional.add_rule(times=1, error="invalid")
    op = submit()
    with pytest.raises(JobFailed):
        op.execute(make_context(op, try_number=1))
    ref = submit().execute(make_context(op, try_number=2))
    assert ref["jobId"].endswith("_1") and ref["location"] == REGION
    assert sorted(j["job_id"][-2:] for j in regional.jobs)[0] == "_1" and len(regional.jobs) == 2


def test_case2_regional_409_whose_get_answers_404_finds_the_job_with_jobs_list(regional):
    """A first try that meets an existing regional job (here: a fixed job_id) follows it, no JobNotVisible."""
    submit(job_id="fixed_regional").execute(make_context(submit()))
    again = submit(job_id="fixed_regional").execute(make_context(submit()))
    assert again == {"projectId": "test-project", "location": REGION, "jobId": "fixed_regional"}
    assert len(regional.jobs) == 1


def test_case2_regional_job_that_cannot_be_located_fails_naming_location(regional, monkeypatch):
    """Another account's job (jobs.list hides it) under the same ID: a clear error, nothing inserted."""
    monkeypatch.setattr("airflow_bqjobs.core.attach.READ_AFTER_CONFLICT_DELAYS", (0.01,))
    regional.add_rule(job_id="^fixed_other$", user_email="someone-else@example.com")
    submit(job_id="fixed_other").execute(make_context(submit()))
    with pytest.raises(JobNotVisible, match="location"):
        submit(job_id="fixed_other").execute(make_context(submit(), try_number=2))
    assert len(regional.jobs) == 1


# -- case 6 ------------------------------------------------------------------------------------


def test_case6_generations_fifty_failing_tries_cost_two_reads_each(fake_bq):
    """Every job fails at once. Walking up from _0 cost 1,275 jobs.get for 50 tries; now 1 + 2 per retry."""
    fake_bq.set_defaults(pending_s=0, running_s=0, error="invalid")
    reads = []
    for try_number in range(1, 51):
        op = submit()
        before = fake_bq.count_calls("get")
        with pytest.raises(JobFailed):
            op.execute(make_context(op, try_number=try_number))
        reads.append(fake_bq.count_calls("get") - before)
    assert fake_bq.count_calls("insert") == 50 and len(fake_bq.jobs) == 50
    assert reads[0] == 1 and set(reads[1:]) == {2} and sum(reads) == 99


def test_case6_generations_gap_never_reruns_an_earlier_generation(fake_bq, bq_client):
    """_0 failed, _1 succeeded, then _0's metadata was deleted: a later try takes _1's result."""
    fake_bq.add_rule(times=1, error="invalid")
    op = submit()
    with pytest.raises(JobFailed):
        op.execute(make_context(op, try_number=1))
    first = fake_bq.jobs[0]["job_id"]
    ref = submit().execute(make_context(op, try_number=2))
    assert ref["jobId"] == first + "_1"
    bq_client.delete_job_metadata(first, location="US")
    again = submit().execute(make_context(op, try_number=3))
    assert again == ref and [j["job_id"] for j in fake_bq.jobs] == [first + "_1"]
    assert fake_bq.count_calls("insert") == 2
