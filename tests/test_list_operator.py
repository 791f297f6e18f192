"""The list operator over real HTTP to the fake: server-side filters, client-side labels, paging, validation."""

import functools
import json
from datetime import datetime, timezone

import pytest
from google.cloud import bigquery

from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.hooks.jobs import BigQueryJobsHook
from airflow_bqjobs.operators.list import BigQueryListJobsOperator
from tests.airflow_context import make_context

DONE_NOW = {"pending_s": 0, "running_s": 0}


pytestmark = pytest.mark.usefixtures("emulator")


def start(fake_bq, bq_client, job_id, query="SELECT 1", labels=None, **behaviour):
    if behaviour:
        fake_bq.add_rule(job_id=f"^{job_id}$", **behaviour)
    config = bigquery.QueryJobConfig(labels=labels or {})
    bq_client.query(query, job_id=job_id, location="US", job_config=config, job_retry=None)


def listing(**kw):
    op = BigQueryListJobsOperator(task_id="list", project_id="test-project", **kw)
    return op.execute(make_context(op))


def ids(summaries):
    return [s["job_id"] for s in summaries]


def test_own_jobs_newest_first_as_compact_json(fake_bq, bq_client):
    start(fake_bq, bq_client, "first", **DONE_NOW, statistics={"query": {"queryPlan": [{"name": "S00"}]}})
    start(fake_bq, bq_client, "second", labels={"team": "a"}, **DONE_NOW)
    start(fake_bq, bq_client, "theirs", user_email="someone@else.com", **DONE_NOW)
    summaries = listing()
    assert ids(summaries) == ["second", "first"]
    second = summaries[0]
    assert (second["state"], second["job_type"], second["labels"], second["location"]) == ("DONE", "query", {"team": "a"}, "US")
    assert second["user_email"].startswith("fakebq-user@") and second["parent_job_id"] is None
    assert "creationTime" in second["statistics"]
    assert "queryPlan" not in json.dumps(summaries)  # compact: scalar statistics only
    assert ids(listing(all_users=True)) == ["theirs", "second", "first"]


def test_state_filter_one_or_several(fake_bq, bq_client):
    start(fake_bq, bq_client, "pending", pending_s=60)
    start(fake_bq, bq_client, "running", pending_s=0, running_s=60)
    start(fake_bq, bq_client, "done", **DONE_NOW)
    assert ids(listing(state_filter="running")) == ["running"]
    assert ids(listing(state_filter=["pending", "RUNNING"])) == ["running", "pending"]
    assert ids(listing(state_filter="pending,done")) == ["done", "pending"]


def test_creation_time_bounds_in_every_form(fake_bq, bq_client):
    fake_bq.clock.freeze()
    t0 = fake_bq.clock.now()
    for job_id in ("old", "mid", "new"):
        start(fake_bq, bq_client, job_id, **DONE_NOW)
        fake_bq.clock.advance(3600)
    low = datetime.fromtimestamp(t0 + 1800, timezone.utc)
    high_ms = int((t0 + 5400) * 1000)
    assert ids(listing(min_creation_time=low, max_creation_time=high_ms)) == ["mid"]
    assert ids(listing(min_creation_time=low.isoformat(), max_creation_time=str(high_ms))) == ["mid"]
    assert ids(listing(max_creation_time=int(t0 * 1000))) == ["old"]


def test_parent_job_id_lists_a_scripts_children(fake_bq, bq_client):
    start(fake_bq, bq_client, "script", query="SELECT 1; SELECT 2", **DONE_NOW)
    start(fake_bq, bq_client, "plain", **DONE_NOW)
    assert ids(listing()) == ["plain", "script"]  # top-level only
    children = listing(parent_job_id="test-project:US.script")
    assert len(children) == 2 and {c["parent_job_id"] for c in children} == {"script"}


def test_label_filter_is_client_side_and_max_results_counts_matches(fake_bq, bq_client):
    for i in range(6):
        start(fake_bq, bq_client, f"job{i}", labels={"team": "a" if i % 2 else "b", "env": "prod"}, **DONE_NOW)
    assert ids(listing(labels={"team": "a"}, max_results=2)) == ["job5", "job3"]
    assert ids(listing(labels={"team": "a", "env": "prod"})) == ["job5", "job3", "job1"]
    assert listing(labels={"team": "c"}) == []
    assert len(fake_bq.calls_for("list")) == 3  # the filter never became a request parameter


def test_pages_through_results_and_stops_at_max_results(fake_bq, bq_client, monkeypatch):
    monkeypatch.setattr(BigQueryJobsHook, "list_jobs", functools.partialmethod(BigQueryJobsHook.list_jobs, page_size=2))
    for i in range(5):
        start(fake_bq, bq_client, f"job{i}", **DONE_NOW)
    assert ids(listing(max_results=None)) == ["job4", "job3", "job2", "job1", "job0"]
    assert len(fake_bq.calls_for("list")) == 3
    assert ids(listing(max_results=3)) == ["job4", "job3", "job2"]
    assert len(fake_bq.calls_for("list")) == 5
    assert ids(listing(labels={}, max_results=50)) == ["job4", "job3", "job2", "job1", "job0"]


def test_default_max_results_is_50_like_bq_ls(fake_bq, bq_client):
    for i in range(52):
        start(fake_bq, bq_client, f"job{i}", **DONE_NOW)
    assert len(listing()) == 50


def test_transient_errors_are_retried(fake_bq, bq_client):
    start(fake_bq, bq_client, "job", **DONE_NOW)
    fake_bq.inject("429", "list", count=2)
    assert ids(listing()) == ["job"]


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"state_filter": "finished"}, "state_filter"),
        ({"state_filter": [1]}, "state_filter"),
        ({"min_creation_time": 2000, "max_creation_time": 1000}, "min_creation_time"),
        ({"min_creation_time": datetime(2026, 1, 1)}, "min_creation_time"),
        ({"max_creation_time": "soon"}, "max_creation_time"),
        ({"max_creation_time": -5}, "max_creation_time"),
        ({"labels": {"Team": "a"}}, "labels"),
        ({"parent_job_id": "a b"}, "parent_job_id"),
        ({"project_id": "Not A Project"}, "project_id"),
        ({"all_users": "yes"}, "all_users"),
    ],
)
def test_bad_filters_fail_at_dag_parse_time(fake_bq, kwargs, field):
    kwargs.setdefault("project_id", "test-project")
    with pytest.raises(InvalidJobInput) as err:
        BigQueryListJobsOperator(task_id="list", **kwargs)
    assert err.value.field == field and fake_bq.calls == []


@pytest.mark.parametrize("max_results", [0, -1, True, 2.5])
def test_bad_max_results_fails_when_the_dag_is_parsed(max_results):
    with pytest.raises(InvalidJobInput) as err:
        BigQueryListJobsOperator(task_id="list", max_results=max_results)
    assert err.value.field == "max_results"
