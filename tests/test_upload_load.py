"""Upload loads (``source_file=``): the file goes with the job through the upload URI, exactly once."""

from __future__ import annotations

import io
import os
from datetime import datetime, timezone

import pytest

from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator
from tests.airflow_context import first_event, make_context, rebuild_trigger
from tests.compat import TaskDeferred, run_dag

TABLE = {"datasetId": "staging", "tableId": "events"}
LOAD = {"load": {"destinationTable": TABLE, "sourceFormat": "NEWLINE_DELIMITED_JSON", "writeDisposition": "WRITE_APPEND"}}
MULTIPART_LIMIT = 5 * 1024 * 1024  # google-cloud-bigquery: resumable upload from here on
D = datetime(2026, 4, 1, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def small_upload_chunks(emulator, monkeypatch):
    """Resumable uploads in 256 KiB chunks (the client's default is 100 MB), so several are sent."""
    monkeypatch.setattr("google.cloud.bigquery.client._DEFAULT_CHUNKSIZE", 256 * 1024)
    return emulator


@pytest.fixture
def rows(tmp_path):
    path = tmp_path / "rows.json"
    path.write_bytes(b"".join(b'{"id": %d, "name": "row %d"}\n' % (i, i) for i in range(2000)))
    return path


def upload(source_file, task_id="upload", configuration=LOAD, **kw):
    kw.setdefault("deferrable", False)
    kw.setdefault("retries", 2)
    return BigQuerySubmitJobOperator(
        task_id=task_id, configuration=configuration, source_file=source_file, project_id="test-project",
        poll_interval=0.05, **kw
    )


def the_job(fake_bq):
    (job,) = fake_bq.jobs
    return job


def test_small_file_is_one_multipart_request_then_awaited(fake_bq, rows):
    op = upload(str(rows))
    context = make_context(op)
    ref = op.execute(context)
    job = the_job(fake_bq)
    assert ref == {"projectId": "test-project", "location": "US", "jobId": job["job_id"]}
    assert fake_bq.uploaded_bytes(job["job_id"]) == rows.read_bytes()
    assert [c["endpoint"] for c in fake_bq.calls if c["method"] != "GET"] == ["upload"]
    assert fake_bq.calls_for("upload")[0]["status"] == 200
    config = job["resource"]["configuration"]
    assert config["load"]["destinationTable"] == {"projectId": "test-project", **TABLE}
    assert config["load"]["sourceFormat"] == "NEWLINE_DELIMITED_JSON" and "sourceUris" not in config["load"]
    assert job["labels"]["airflow-task"] == "upload" and job["error_result"] is None
    assert context["ti"].xcom["job_summary"]["job_type"] == "load"


def test_large_file_is_a_resumable_upload_in_chunks(fake_bq, tmp_path):
    big = tmp_path / "big.csv"
    big.write_bytes(os.urandom(MULTIPART_LIMIT + 300 * 1024))
    op = upload(big, configuration={"load": {"destinationTable": TABLE, "sourceFormat": "CSV"}})
    ref = op.execute(make_context(op))
    assert fake_bq.uploaded_bytes(ref["jobId"]) == big.read_bytes()
    chunks = fake_bq.calls_for("upload_chunk")
    assert len(chunks) == -(-big.stat().st_size // (256 * 1024))  # every 256 KiB chunk, once
    assert [c["status"] for c in chunks] == [308] * (len(chunks) - 1) + [200]


def test_retry_after_the_upload_reattaches_and_uploads_nothing(fake_bq, rows):
    """Attempt 1 uploads, defers and dies; attempt 2 finds that job: no second upload, one job."""
    fake_bq.add_rule(running_s=0.5)
    op = upload(str(rows), deferrable=True)
    with pytest.raises(TaskDeferred):
        op.execute(make_context(op, try_number=1))
    assert len(fake_bq.calls_for("upload")) == 1
    context = make_context(op, try_number=2)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    event = first_event(rebuild_trigger(deferred.value.trigger))
    ref = op.execute_complete(context, event)
    assert len(fake_bq.calls_for("upload")) == 1 and fake_bq.count_jobs() == 1
    assert ref["jobId"] == the_job(fake_bq)["job_id"] and the_job(fake_bq)["error_result"] is None
    # a retry after success inserts nothing either
    assert op.execute(make_context(op, try_number=3)) == ref
    assert len(fake_bq.calls_for("upload")) == 1


def test_lost_answer_of_the_upload_ends_in_409_then_the_job_is_followed(fake_bq, rows):
    fake_bq.inject("reset_after", "upload", count=1)  # BigQuery created the job; the answer was lost
    fake_bq.inject("404_after_409", "upload", count=1)  # and the job is not readable at once
    op = upload(str(rows))
    ref = op.execute(make_context(op))
    uploads = fake_bq.calls_for("upload")
    assert [c["status"] for c in uploads] == [None, 409]
    assert fake_bq.count_jobs() == 1 and ref["jobId"] == the_job(fake_bq)["job_id"]
    assert fake_bq.uploaded_bytes(ref["jobId"]) == rows.read_bytes()


def test_transient_errors_during_a_resumable_upload_are_retried(fake_bq, tmp_path):
    big = tmp_path / "big.csv"
    big.write_bytes(os.urandom(MULTIPART_LIMIT + 10))
    fake_bq.inject("503", "upload_chunk", count=1)
    fake_bq.inject("reset_before", "upload", count=1)
    op = upload(big, configuration={"load": {"destinationTable": TABLE}})
    ref = op.execute(make_context(op))
    assert fake_bq.uploaded_bytes(ref["jobId"]) == big.read_bytes() and fake_bq.count_jobs() == 1


def test_file_object_for_programmatic_use(fake_bq):
    data = b"a,b\n1,2\n"
    stream = io.BytesIO(b"junk" + data)
    stream.seek(4)  # sent from its start, whatever its position
    op = upload(stream, configuration={"load": {"destinationTable": TABLE, "sourceFormat": "CSV"}})
    ref = op.execute(make_context(op))
    assert fake_bq.uploaded_bytes(ref["jobId"]) == b"junk" + data


def test_job_id_hashes_path_and_size_not_content(rows, tmp_path):
    def job_id(source):
        op = upload(source)
        return op.build_job(make_context(op))[0].job_id

    first = job_id(str(rows))
    rows.write_bytes(rows.read_bytes().replace(b"row", b"ROW"))  # same size, other content
    assert job_id(str(rows)) == first
    rows.write_bytes(rows.read_bytes() + b'{"id": -1}\n')
    assert job_id(str(rows)) != first
    other = tmp_path / "copy.json"
    other.write_bytes(rows.read_bytes())
    assert job_id(str(other)) != job_id(str(rows))
    assert job_id(io.BytesIO(b"x" * 10)) == job_id(io.BytesIO(b"y" * 10)) != job_id(io.BytesIO(b"x" * 11))


class _Unseekable(io.RawIOBase):
    def readable(self):
        return True

    def seekable(self):
        return False


@pytest.mark.parametrize(
    ("configuration", "source", "field"),
    [
        ({"query": {"query": "SELECT 1"}}, "rows", "configuration"),
        ({"load": {"destinationTable": TABLE, "sourceUris": ["gs://b/x.json"]}}, "rows", "configuration.load.sourceUris"),
        ({"load": {"sourceFormat": "CSV"}}, "rows", "configuration.load.destinationTable"),
        ({"load": {"destinationTable": {"datasetId": "d"}}}, "rows", "configuration.load.destinationTable.tableId"),
        (LOAD, "missing", "source_file"),
        (LOAD, "directory", "source_file"),
        (LOAD, "text", "source_file"),
        (LOAD, "unseekable", "source_file"),
        (LOAD, 42, "source_file"),
    ],
)
def test_bad_input_fails_before_anything_is_sent(fake_bq, rows, tmp_path, configuration, source, field):
    sources = {
        "rows": str(rows),
        "missing": str(tmp_path / "nope.json"),
        "directory": str(tmp_path),
        "text": io.StringIO("a,b\n"),
        "unseekable": _Unseekable(),
    }
    source = sources.get(source, source)
    with pytest.raises(InvalidJobInput) as info:
        op = upload(source, configuration=configuration)
        op.execute(make_context(op))
    assert info.value.field == field
    assert fake_bq.calls == []


def test_dag_run_with_a_templated_json_path_uploads_once(fake_bq, rows, register_dag):
    """source_file is templated but never read as a template file, even ending in .json (in
    template_ext); a second run of the same DAG run inserts and uploads nothing."""
    from tests.compat import DAG

    fake_bq.add_rule(running_s=1.0)
    with DAG("bqjobs_upload", schedule=None, params={"name": "rows"}, template_searchpath=[str(rows.parent)]) as dag:
        upload(str(rows.parent / "{{ params.name }}.json"), deferrable=True, retries=0)
        upload(str(rows), task_id="plain_path", retries=0)  # a file in the template search path
    register_dag(dag)
    run = run_dag(dag, D)
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == {"upload": "success", "plain_path": "success"}
    assert fake_bq.count_jobs() == 2
    for job in fake_bq.jobs:
        assert fake_bq.uploaded_bytes(job["job_id"]) == rows.read_bytes()
    again = run_dag(dag, D)
    assert again.state == "success"
    assert fake_bq.count_jobs() == 2 and len(fake_bq.calls_for("upload")) == 2
