"""Repeat a job: strip a job resource to a re-submittable configuration, then run it exactly once."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest

from airflow_bqjobs.core.errors import InvalidJobInput, JobFailed
from airflow_bqjobs.core.job_ref import JobRef
from airflow_bqjobs.core.rerun import deep_merge, parse_source_job, rerun_configuration, resubmittable_configuration
from airflow_bqjobs.operators.rerun import BigQueryRerunJobOperator
from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator
from tests.airflow_context import first_event, make_context, rebuild_trigger
from tests.compat import TaskDeferred, run_dag

D = datetime(2026, 5, 1, tzinfo=timezone.utc)

# A query job as jobs.get returns it: BigQuery filled in jobType, the anonymous result table and the
# disposition it used for it; the old task's Airflow labels sit next to the user's.
QUERY_JOB = {
    "kind": "bigquery#job",
    "etag": "abc",
    "id": "proj:US.airflow_old_job",
    "selfLink": "https://bigquery.googleapis.com/bigquery/v2/projects/proj/jobs/airflow_old_job?location=US",
    "user_email": "someone@example.com",
    "jobReference": {"projectId": "proj", "jobId": "airflow_old_job", "location": "US"},
    "configuration": {
        "jobType": "QUERY",
        "query": {
            "query": "SELECT region, SUM(x) FROM sales GROUP BY region",
            "useLegacySql": False,
            "priority": "INTERACTIVE",
            "destinationTable": {"projectId": "proj", "datasetId": "_8b037444d2d9f9d3ab1a64c30e9f33e4da4fb5d0",
                                 "tableId": "anon4c3b05a8a9f7f0d1f1f1b1"},
            "writeDisposition": "WRITE_TRUNCATE",
            "queryParameters": [{"name": "d", "parameterType": {"type": "DATE"}, "parameterValue": {"value": "2026-01-01"}}],
        },
        "labels": {"team": "analytics", "airflow-dag": "old", "airflow-task": "t", "airflow-run": "r", "airflow-map-index": "3"},
        "jobTimeoutMs": "3600000",
    },
    "statistics": {"creationTime": "1", "startTime": "2", "endTime": "3", "query": {"totalBytesProcessed": "10"}},
    "status": {"state": "DONE", "errorResult": {"reason": "jobBackendError", "message": "try again"}},
    "principal_subject": "user:someone@example.com",
    "jobCreationReason": {"code": "REQUESTED"},
}




# -- core: what a re-run submits ------------------------------------------------------------------

def test_strips_what_bigquery_filled_in_and_keeps_what_the_user_asked():
    config = resubmittable_configuration(QUERY_JOB)
    assert config == {
        "query": {
            "query": "SELECT region, SUM(x) FROM sales GROUP BY region",
            "useLegacySql": False,
            "priority": "INTERACTIVE",
            "queryParameters": QUERY_JOB["configuration"]["query"]["queryParameters"],
        },
        "labels": {"team": "analytics"},
        "jobTimeoutMs": "3600000",
    }
    assert QUERY_JOB["configuration"]["query"]["destinationTable"]  # the input is left alone


def test_a_named_destination_and_its_disposition_are_kept():
    job = copy.deepcopy(QUERY_JOB)
    job["configuration"]["query"]["destinationTable"] = {"projectId": "proj", "datasetId": "_hidden", "tableId": "totals"}
    job["configuration"]["query"]["writeDisposition"] = "WRITE_APPEND"
    body = resubmittable_configuration(job)["query"]
    assert body["destinationTable"]["tableId"] == "totals" and body["writeDisposition"] == "WRITE_APPEND"


def test_singular_twins_of_plural_fields_are_dropped():
    extract = {"configuration": {"jobType": "EXTRACT", "extract": {
        "sourceTable": {"projectId": "p", "datasetId": "d", "tableId": "t"},
        "destinationUri": "gs://b/out-*.json", "destinationUris": ["gs://b/out-*.json"], "compression": "NONE"}}}
    assert resubmittable_configuration(extract) == {"extract": {
        "sourceTable": {"projectId": "p", "datasetId": "d", "tableId": "t"},
        "destinationUris": ["gs://b/out-*.json"], "compression": "NONE"}}
    table = {"projectId": "p", "datasetId": "d", "tableId": "t"}
    copy_job = {"configuration": {"copy": {"sourceTable": table, "sourceTables": [table],
                                           "destinationTable": {**table, "tableId": "t2"}}}}
    assert "sourceTable" not in resubmittable_configuration(copy_job)["copy"]


def test_overrides_deep_merge_replace_lists_and_delete_with_none():
    assert deep_merge({"a": {"b": 1, "c": [1, 2]}, "d": 1}, {"a": {"c": [3], "e": 2}, "d": None}) == {"a": {"b": 1, "c": [3], "e": 2}}
    config = rerun_configuration(QUERY_JOB, {"query": {"destinationTable": {"projectId": "p", "datasetId": "d", "tableId": "t"},
                                                       "writeDisposition": "WRITE_TRUNCATE", "queryParameters": None}})
    assert config["query"]["destinationTable"]["tableId"] == "t" and "queryParameters" not in config["query"]
    assert config["query"]["query"].startswith("SELECT region")


def test_job_timeout_overrides_then_task_timeout_then_the_old_jobs():
    assert rerun_configuration(QUERY_JOB, {"jobTimeoutMs": "5000"}, job_timeout_ms=60000)["jobTimeoutMs"] == "5000"
    assert rerun_configuration(QUERY_JOB, job_timeout_ms=60000)["jobTimeoutMs"] == "60000"
    assert rerun_configuration(QUERY_JOB)["jobTimeoutMs"] == "3600000"


def test_an_uploaded_load_cannot_be_repeated_without_new_source_uris():
    upload = {"jobReference": {"jobId": "up"}, "configuration": {"jobType": "LOAD", "load": {
        "destinationTable": {"projectId": "p", "datasetId": "d", "tableId": "t"}, "sourceFormat": "CSV"}}}
    with pytest.raises(InvalidJobInput, match="source_job: load job up took its data from an upload"):
        rerun_configuration(upload)
    config = rerun_configuration(upload, {"load": {"sourceUris": ["gs://b/again.csv"]}})
    assert config["load"]["sourceUris"] == ["gs://b/again.csv"]


def test_unusable_sources_and_overrides_are_named():
    with pytest.raises(InvalidJobInput, match="source_job: job x has no configuration"):
        resubmittable_configuration({"jobReference": {"jobId": "x"}, "status": {"state": "DONE"}})
    with pytest.raises(InvalidJobInput, match="configuration_overrides"):
        rerun_configuration(QUERY_JOB, {"load": {"sourceUris": ["gs://b/x"]}})  # two job types
    with pytest.raises(InvalidJobInput, match="source_job: names 2 jobs"):
        parse_source_job(["a", "b"])
    with pytest.raises(InvalidJobInput, match="source_job"):
        parse_source_job("bad id!")


@pytest.mark.parametrize(
    "value",
    ["proj:EU.job_1", {"projectId": "proj", "location": "EU", "jobId": "job_1"},
     "{'projectId': 'proj', 'location': 'EU', 'jobId': 'job_1'}", JobRef("job_1", "proj", "EU")],
)
def test_source_job_in_every_accepted_form(value):
    assert parse_source_job(value) == JobRef("job_1", "proj", "EU")


# -- the operator over real HTTP ------------------------------------------------------------------

def submit_op(task_id="submit", **kw):
    return BigQuerySubmitJobOperator(
        task_id=task_id, project_id="test-project", poll_interval=0.05,
        configuration={"query": {"query": "SELECT 1 AS x", "useLegacySql": False}, "labels": {"team": "analytics"}}, **kw)


def rerun_op(source_job, task_id="rerun", **kw):
    kw.setdefault("retries", 2)
    return BigQueryRerunJobOperator(task_id=task_id, source_job=source_job, project_id="test-project", poll_interval=0.05, **kw)


def test_repeats_a_failed_job_once_and_a_retry_reattaches(emulator, fake_bq):
    fake_bq.add_rule(error={"reason": "invalid", "message": "table busy"}, times=1)
    source_op = submit_op()
    with pytest.raises(JobFailed):
        source_op.execute(make_context(source_op))
    (source,) = fake_bq.jobs

    op = rerun_op({"projectId": "test-project", "location": "US", "jobId": source["job_id"]})
    ref = op.execute(make_context(op))
    assert ref["jobId"] != source["job_id"] and ref["jobId"].startswith("airflow_test_dag_rerun_")
    new = fake_bq.job(ref["jobId"])
    assert new["error_result"] is None and new["query"] == "SELECT 1 AS x"
    assert new["labels"] == {"team": "analytics", "airflow-dag": "test_dag", "airflow-task": "rerun",
                             "airflow-run": "manual__2026-01-01t00_00_00_00_00"}
    assert "jobType" not in new["resource"]["configuration"]["query"]

    # a retry of the re-run task, and a re-run from another form of the same source: no new job
    assert op.execute(make_context(op, try_number=2)) == ref
    again = rerun_op(f"test-project:US.{source['job_id']}")
    assert again.execute(make_context(again, try_number=3)) == ref
    assert fake_bq.count_jobs() == 2 and len(fake_bq.calls_for("insert")) == 2


def test_server_filled_fields_are_not_resubmitted_and_overrides_change_the_id(emulator, fake_bq, bq_client):
    resource = copy.deepcopy(QUERY_JOB)
    body = {"jobReference": {"projectId": "test-project", "jobId": "bq_console_job", "location": "EU"},
            "configuration": resource["configuration"]}
    bq_client._connection.api_request(method="POST", path="/projects/test-project/jobs", data=body)

    op = rerun_op("EU.bq_console_job", execution_timeout=timedelta(minutes=10))
    ref = op.execute(make_context(op))
    new = fake_bq.job(ref["jobId"])
    assert ref["location"] == "EU" and new["location"] == "EU"  # the source job's location
    sent = new["resource"]["configuration"]
    # not the source's anonymous result table: the new job got its own (as BigQuery reports it)
    old_result = QUERY_JOB["configuration"]["query"]["destinationTable"]
    assert sent["query"]["destinationTable"]["datasetId"] != old_result["datasetId"]
    assert "writeDisposition" not in sent["query"]
    assert sent["jobTimeoutMs"] == "600000"  # this task's timeout, not the old task's hour
    assert sent["labels"]["team"] == "analytics" and sent["labels"]["airflow-task"] == "rerun"

    changed = rerun_op("EU.bq_console_job", task_id="rerun", execution_timeout=timedelta(minutes=10),
                       configuration_overrides={"query": {"query": "SELECT 2"}})
    other = changed.execute(make_context(changed))
    assert other["jobId"] != ref["jobId"] and fake_bq.job(other["jobId"])["query"] == "SELECT 2"


def test_deferrable_rerun_waits_in_the_trigger(emulator, fake_bq):
    source_op = submit_op()
    source_ref = source_op.execute(make_context(source_op))
    fake_bq.add_rule(running_s=0.5)
    op = rerun_op(source_ref, deferrable=True)
    context = make_context(op)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    event = first_event(rebuild_trigger(deferred.value.trigger))
    ref = op.execute_complete(context, event)
    assert fake_bq.job(ref["jobId"])["state"] == "DONE" and fake_bq.count_jobs() == 2


def test_bad_or_missing_source_fails_before_any_insert(emulator, fake_bq):
    with pytest.raises(InvalidJobInput, match="configuration_overrides"):
        rerun_op("x", configuration_overrides=["not", "a", "dict"])
    with pytest.raises(InvalidJobInput, match="source_job"):
        rerun_op("not a job id!")
    assert fake_bq.calls == []
    op = rerun_op("US.no_such_job")
    with pytest.raises(InvalidJobInput, match="source_job: no job test-project:US.no_such_job"):
        op.execute(make_context(op))
    assert [c["endpoint"] for c in fake_bq.calls] == ["get"]


def test_dag_reruns_a_submit_from_its_output_and_its_rendered_xcom(emulator, fake_bq, register_dag):
    from tests.compat import DAG

    with DAG("bqjobs_rerun", schedule=None) as dag:
        source = submit_op(deferrable=True)
        rerun_op(source.output, task_id="rerun_output", retries=0, deferrable=True)
        rerun_op("{{ ti.xcom_pull(task_ids='submit') }}", task_id="rerun_templated", retries=0,
                 configuration_overrides='{"query": {"query": "SELECT {{ 40 + 2 }}"}}') << source
    register_dag(dag)
    fake_bq.add_rule(running_s=1.0)
    run = run_dag(dag, D)
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == dict.fromkeys(
        ("submit", "rerun_output", "rerun_templated"), "success")
    queries = sorted((j["labels"]["airflow-task"], j["query"]) for j in fake_bq.jobs)
    assert queries == [("rerun_output", "SELECT 1 AS x"), ("rerun_templated", "SELECT 42"), ("submit", "SELECT 1 AS x")]
    again = run_dag(dag, D)
    assert again.state == "success" and fake_bq.count_jobs() == 3 and len(fake_bq.calls_for("insert")) == 3
