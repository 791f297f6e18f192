"""The fake BigQuery server, driven over HTTP by the real google-cloud-bigquery client."""

from __future__ import annotations

import io
import json
import re
import threading
import urllib.error
import urllib.request
from datetime import datetime, timezone

import pytest
import requests
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from tests.fakebq import Behaviour, FakeBigQueryProcess, RemoteFakeBigQuery, parse_directive
from tests.fakebq.sql_statements import split_statements

PROJECT = "test-project"
# Retries without the client's default 1 s+ backoff.
FAST_RETRY = bigquery.DEFAULT_RETRY.with_delay(initial=0.01, maximum=0.02).with_timeout(5)


def query(client, sql, job_id, **kw):
    kw.setdefault("job_retry", None)
    return client.query(sql, job_id=job_id, **kw)


def raw(fake, method, path, body=None, headers=None):
    """(status, headers, parsed JSON or bytes) for a request sent without the client."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(fake.url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            status, hdrs, payload = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        status, hdrs, payload = exc.code, exc.headers, exc.read()
    try:
        return status, hdrs, json.loads(payload) if payload else None
    except ValueError:
        return status, hdrs, payload


def reason_of(exc: gexc.GoogleAPICallError) -> str:
    return exc.errors[0]["reason"]


# -- lifecycle ------------------------------------------------------------------------
def test_insert_get_lifecycle_follows_frozen_clock(fake_bq, bq_client):
    fake_bq.clock.freeze()
    fake_bq.add_rule(job_id="^life_", pending_s=1, running_s=2, total_bytes_processed=1234)
    job = query(bq_client, "SELECT 1", "life_1", job_config=bigquery.QueryJobConfig(labels={"team": "x"}))
    assert job.state == "PENDING"

    fake_bq.clock.advance(1)
    job.reload()
    assert job.state == "RUNNING" and job.started is not None and job.ended is None

    fake_bq.clock.advance(2)
    job.reload()
    assert job.state == "DONE" and job.error_result is None
    assert (job.ended - job.started).total_seconds() == pytest.approx(2, abs=0.002)
    assert job.total_bytes_processed == 1234

    status, _, res = raw(fake_bq, "GET", f"/bigquery/v2/projects/{PROJECT}/jobs/life_1?location=US")
    assert status == 200
    assert res["id"] == "test-project:US.life_1" and res["kind"] == "bigquery#job"
    assert res["jobReference"] == {"projectId": PROJECT, "jobId": "life_1", "location": "US"}
    assert res["configuration"]["jobType"] == "QUERY"
    assert res["configuration"]["labels"] == {"team": "x"}
    assert res["configuration"]["query"]["query"] == "SELECT 1"
    assert re.fullmatch(r"\d{13}", res["statistics"]["creationTime"])
    assert res["user_email"] == fake_bq.state.user_email
    assert res["selfLink"].endswith("/projects/test-project/jobs/life_1?location=US")


def test_get_unknown_job_and_location_mismatch_are_404(fake_bq, bq_client):
    with pytest.raises(gexc.NotFound, match=r"Not found: Job test-project:US\.nope"):
        bq_client.get_job("nope", retry=None)
    query(bq_client, "SELECT 1", "in_eu", location="EU")
    with pytest.raises(gexc.NotFound):
        bq_client.get_job("in_eu", location="US", retry=None)
    assert bq_client.get_job("in_eu", location="EU").location == "EU"
    assert bq_client.get_job("in_eu").job_id == "in_eu"  # no location: found in a multi-region


def test_regional_job_without_location_follows_bigquery_location_rule(fake_bq, bq_client):
    """Outside the US and EU multi-regions get/cancel/delete/getQueryResults need the location;
    an insert without one runs where the data lives and says where; jobs.list lists every location."""
    fake_bq.clock.freeze()
    fake_bq.add_rule(job_id="^regional", location="europe-west2", running_s=1)
    status, _, body = raw(fake_bq, "POST", f"/bigquery/v2/projects/{PROJECT}/jobs",
                          {"jobReference": {"jobId": "regional_1"},
                           "configuration": {"query": {"query": "SELECT 1", "useLegacySql": False}}})
    assert status == 200 and body["jobReference"]["location"] == "europe-west2"
    base = f"/bigquery/v2/projects/{PROJECT}"
    for method, path in (("GET", "/jobs/regional_1"), ("POST", "/jobs/regional_1/cancel"),
                         ("GET", "/queries/regional_1?timeoutMs=0"), ("DELETE", "/jobs/regional_1/delete")):
        assert raw(fake_bq, method, base + path)[0] == 404, path
    assert bq_client.get_job("regional_1", location="europe-west2").location == "europe-west2"
    listed = [j["jobReference"] for j in raw(fake_bq, "GET", base + "/jobs")[2]["jobs"]]
    assert {"projectId": PROJECT, "jobId": "regional_1", "location": "europe-west2"} in listed
    fake_bq.clock.advance(2)
    assert raw(fake_bq, "DELETE", base + "/jobs/regional_1/delete?location=europe-west2")[0] == 204
    fake_bq.set_location_rule(False)  # a test may turn the rule off
    query(bq_client, "SELECT 1", "regional_2")
    assert bq_client.get_job("regional_2").location == "europe-west2"


def test_failed_outcome_and_fail_once_then_succeed(fake_bq, bq_client):
    fake_bq.clock.freeze()
    fake_bq.add_rule(job_id="^flaky", times=1, running_s=1,
                     error={"reason": "jobBackendError", "message": "backend died"},
                     errors=[{"reason": "warning", "message": "non-fatal"}])
    first = query(bq_client, "SELECT 1", "flaky_1")
    second = query(bq_client, "SELECT 1", "flaky_2")
    fake_bq.clock.advance(5)
    first.reload()
    second.reload()
    assert first.state == "DONE"
    assert first.error_result == {"reason": "jobBackendError", "message": "backend died"}
    assert [e["reason"] for e in first.errors] == ["jobBackendError", "warning"]
    assert second.state == "DONE" and second.error_result is None
    assert fake_bq.job("flaky_1")["error_result"]["reason"] == "jobBackendError"


def test_rules_match_on_type_labels_and_query(fake_bq, bq_client):
    fake_bq.clock.freeze()
    fake_bq.add_rule(job_type="COPY", error="jobInternalError", pending_s=0, running_s=0)
    fake_bq.add_rule(labels={"kind": "slow"}, running_s=50)
    fake_bq.add_rule(query=r"FROM broken", error="invalidQuery", pending_s=0, running_s=0)
    copy = bq_client.copy_table("p.d.a", "p.d.b", job_id="m_copy")
    slow = query(bq_client, "SELECT 1", "m_slow", job_config=bigquery.QueryJobConfig(labels={"kind": "slow"}))
    broken = query(bq_client, "SELECT * FROM broken", "m_broken")
    fake_bq.clock.advance(1)
    for job in (copy, slow, broken):
        job.reload()
    assert copy.job_type == "copy" and copy.error_result["reason"] == "jobInternalError"
    assert slow.state == "RUNNING"
    assert broken.error_result["reason"] == "invalidQuery"
    assert [r["matched"] for r in fake_bq.rules] == [1, 1, 1]


def test_insert_validation_errors_have_bigquery_shape(fake_bq):
    path = f"/bigquery/v2/projects/{PROJECT}/jobs"
    two_kinds = {"jobReference": {"jobId": "v1"},
                 "configuration": {"query": {"query": "SELECT 1"}, "copy": {}}}
    status, _, body = raw(fake_bq, "POST", path, two_kinds)
    assert status == 400
    assert body["error"]["code"] == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    assert body["error"]["errors"][0]["reason"] == "invalid"
    assert body["error"]["errors"][0]["domain"] == "global"

    for bad in ({"jobReference": {"jobId": "bad id!"}, "configuration": {"query": {"query": "SELECT 1"}}},
                {"jobReference": {"jobId": "x" * 1025}, "configuration": {"query": {"query": "SELECT 1"}}},
                {"jobReference": {"jobId": "v2"}, "configuration": {}},
                {"jobReference": {"jobId": "v3"}, "configuration": {"query": {"query": "SELECT 1"},
                                                                    "labels": {"Bad": "x"}}}):
        status, _, body = raw(fake_bq, "POST", path, bad)
        assert (status, body["error"]["errors"][0]["reason"]) == (400, "invalid"), bad
    assert fake_bq.jobs == []

    status, _, body = raw(fake_bq, "POST", path, {"configuration": {"query": {"query": "SELECT 1"}}})
    assert status == 200 and body["jobReference"]["jobId"].startswith("job_")
    assert body["jobReference"]["location"] == "US"


def test_concurrent_inserts_of_one_id_exactly_one_wins(fake_bq, bq_client):
    n = 10  # the client's connection pool holds 10: one connection per thread
    barrier = threading.Barrier(n)
    results = []

    def worker():
        barrier.wait()
        try:
            query(bq_client, "SELECT 1", "race_1", retry=None)
            results.append("ok")
        except gexc.Conflict as exc:
            results.append(exc.errors[0]["message"])

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results.count("ok") == 1
    assert [r for r in results if r != "ok"] == ["Already Exists: Job test-project:US.race_1"] * (n - 1)
    assert fake_bq.count_jobs("race_") == 1
    assert fake_bq.count_calls("insert", status=409) == n - 1


# -- cancel / delete -----------------------------------------------------------------------
def test_cancel_has_a_window_then_job_is_stopped(fake_bq, bq_client):
    fake_bq.clock.freeze()
    fake_bq.add_rule(job_id="^cx", pending_s=0, running_s=100, cancel_s=0.5)
    job = query(bq_client, "SELECT 1", "cx_1")
    cancelled = bq_client.cancel_job("cx_1", location="US")
    assert cancelled.state == "RUNNING"
    fake_bq.clock.advance(0.4)
    job.reload()
    assert job.state == "RUNNING" and fake_bq.job("cx_1")["cancel_requested"]
    fake_bq.clock.advance(0.1)
    job.reload()
    assert job.state == "DONE"
    assert job.error_result == {"reason": "stopped",
                                "message": "Job execution was cancelled: User requested cancellation"}

    query(bq_client, "SELECT 1", "done_1")
    fake_bq.clock.advance(1)  # default behaviour is short
    again = bq_client.cancel_job("done_1")
    assert again.state == "DONE" and again.error_result is None
    assert not fake_bq.job("done_1")["cancel_requested"]


def test_cancel_default_delay_on_real_clock(fake_bq, bq_client):
    fake_bq.add_rule(running_s=30)
    job = query(bq_client, "SELECT 1", "cr_1")
    cancelled = bq_client.cancel_job("cr_1")
    assert cancelled.state in ("PENDING", "RUNNING")  # the answer is computed when the cancel lands
    with pytest.raises(gexc.BadRequest, match="User requested cancellation"):
        job.result(timeout=5)
    snap = fake_bq.job("cr_1")
    assert snap["end_at"] - snap["created_at"] < 5  # stopped well before its 30 s run


def test_delete_rules(fake_bq, bq_client):
    fake_bq.clock.freeze()
    fake_bq.add_rule(job_id="^del_", running_s=3)
    query(bq_client, "SELECT 1", "del_running")
    with pytest.raises(gexc.BadRequest) as info:
        bq_client.delete_job_metadata("del_running", location="US", retry=None)
    assert reason_of(info.value) == "resourceInUse"

    query(bq_client, "SELECT 1; SELECT 2; SELECT 3", "del_script")
    fake_bq.clock.advance(5)
    parent = fake_bq.job("del_script")
    assert len(parent["child_job_ids"]) == 3
    child = parent["child_job_ids"][0]
    with pytest.raises(gexc.BadRequest, match="child jobs cannot be deleted") as info:
        bq_client.delete_job_metadata(child, location="US", retry=None)
    assert reason_of(info.value) == "invalid"

    status, _, body = raw(fake_bq, "DELETE", f"/bigquery/v2/projects/{PROJECT}/jobs/del_script/delete?location=US")
    assert (status, body) == (204, None)
    for job_id in ["del_script", *parent["child_job_ids"]]:
        assert fake_bq.job(job_id) is None
        with pytest.raises(gexc.NotFound):
            bq_client.get_job(job_id, retry=None)
    with pytest.raises(gexc.NotFound):
        bq_client.delete_job_metadata("never_was", retry=None)


# -- scripts and list ----------------------------------------------------------------------
def test_script_children_appear_statement_by_statement(fake_bq, bq_client):
    fake_bq.clock.freeze()
    fake_bq.add_rule(job_id="^scr", pending_s=0, running_s=3)
    sql = "SELECT 'a;b'; /* x; y */ SELECT 2;\n-- c;\nSELECT 3;"
    query(bq_client, sql, "scr_1")
    parent = fake_bq.job("scr_1")
    assert len(parent["child_job_ids"]) == 1  # only the first statement has started
    fake_bq.clock.advance(2.5)
    children = list(bq_client.list_jobs(parent_job="scr_1"))
    assert len(children) == 3
    assert [c.job_id for c in children] == [f"{children[2].job_id[:-2]}_{i}" for i in (2, 1, 0)]
    assert re.fullmatch(r"script_job_[0-9a-f]{32}_0", children[2].job_id)
    assert children[2].query == "SELECT 'a;b'"
    assert [j.job_id for j in bq_client.list_jobs()] == ["scr_1"]  # top-level only
    fake_bq.clock.advance(1)
    status, _, res = raw(fake_bq, "GET", f"/bigquery/v2/projects/{PROJECT}/jobs/scr_1")
    assert res["statistics"]["numChildJobs"] == "3"
    assert res["statistics"]["query"]["statementType"] == "SCRIPT"
    child = bq_client.get_job(children[0].job_id)
    assert child._properties["statistics"]["parentJobId"] == "scr_1"


def test_cancelling_a_script_stops_its_running_child(fake_bq, bq_client):
    fake_bq.clock.freeze()
    fake_bq.add_rule(job_id="^scx", pending_s=0, running_s=30, cancel_s=0)
    query(bq_client, "SELECT 1; SELECT 2; SELECT 3", "scx_1")
    fake_bq.clock.advance(12)  # second statement running
    bq_client.cancel_job("scx_1")
    states = {j["job_id"][-1]: (j["state"], (j["error_result"] or {}).get("reason")) for j in fake_bq.jobs
              if j["parent_job_id"]}
    assert states == {"0": ("DONE", None), "1": ("DONE", "stopped")}
    fake_bq.clock.advance(100)
    assert fake_bq.job("scx_1")["error_result"]["reason"] == "stopped"
    assert len(fake_bq.jobs) == 3


def test_list_filters_order_and_paging(fake_bq, bq_client):
    fake_bq.clock.freeze()
    fake_bq.add_rule(job_id="^other", user_email="someone-else@example.com", running_s=0, pending_s=0)
    fake_bq.add_rule(job_id="^bad", running_s=0, pending_s=0, error="invalid")
    fake_bq.add_rule(job_id="^slow", running_s=100, pending_s=0)
    t0 = fake_bq.clock.now()
    for job_id in ("ok_1", "bad_1", "other_1", "slow_1", "ok_2"):
        query(bq_client, "SELECT 1", job_id)
        fake_bq.clock.advance(1)

    assert [j.job_id for j in bq_client.list_jobs()] == ["ok_2", "slow_1", "bad_1", "ok_1"]
    assert [j.job_id for j in bq_client.list_jobs(all_users=True)][:3] == ["ok_2", "slow_1", "other_1"]
    assert [j.job_id for j in bq_client.list_jobs(state_filter="running")] == ["slow_1"]
    window = dict(min_creation_time=datetime.fromtimestamp(t0 + 0.5, timezone.utc),
                  max_creation_time=datetime.fromtimestamp(t0 + 3.5, timezone.utc))
    assert [j.job_id for j in bq_client.list_jobs(all_users=True, **window)] == ["slow_1", "other_1", "bad_1"]

    pages = bq_client.list_jobs(page_size=2).pages
    assert [[j.job_id for j in page] for page in pages] == [["ok_2", "slow_1"], ["bad_1", "ok_1"]]

    base = f"/bigquery/v2/projects/{PROJECT}/jobs"
    _, _, body = raw(fake_bq, "GET", f"{base}?stateFilter=running&stateFilter=pending&allUsers=true")
    assert [j["jobReference"]["jobId"] for j in body["jobs"]] == ["slow_1"]
    _, _, body = raw(fake_bq, "GET", f"{base}?stateFilter=done&projection=minimal&maxResults=1")
    entry = body["jobs"][0]
    assert body["kind"] == "bigquery#jobList" and "nextPageToken" in body
    assert "configuration" not in entry
    assert entry["id"] == "test-project:US.ok_2" and entry["state"] == "DONE"
    _, _, body = raw(fake_bq, "GET", f"{base}?projection=full&stateFilter=done")
    bad = next(j for j in body["jobs"] if j["jobReference"]["jobId"] == "bad_1")
    assert bad["errorResult"]["reason"] == "invalid" and bad["status"]["errorResult"]["reason"] == "invalid"
    assert bad["configuration"]["jobType"] == "QUERY" and bad["user_email"]


# -- uploads ---------------------------------------------------------------------------------------
def test_multipart_upload(fake_bq, bq_client):
    data = b"a,b\n1,2\n" * 1000
    job = bq_client.load_table_from_file(io.BytesIO(data), "ds.tbl", job_id="up_multi", size=len(data))
    assert job.job_type == "load" and job.job_id == "up_multi"
    assert fake_bq.uploaded_bytes("up_multi") == data
    assert job._properties["statistics"]["load"]["inputFileBytes"] == str(len(data))
    assert [c["endpoint"] for c in fake_bq.calls] == ["upload"]
    with pytest.raises(gexc.Conflict, match="Already Exists: Job test-project:US.up_multi"):
        bq_client.load_table_from_file(io.BytesIO(data), "ds.tbl", job_id="up_multi", size=len(data))


@pytest.mark.parametrize("size", [600 * 1024 + 7, 512 * 1024])
def test_resumable_upload_in_chunks(fake_bq, bq_client, monkeypatch, size):
    monkeypatch.setattr("google.cloud.bigquery.client._DEFAULT_CHUNKSIZE", 256 * 1024)
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    job = bq_client.load_table_from_file(io.BytesIO(data), "ds.tbl", job_id="up_res")  # no size: resumable
    assert job.job_id == "up_res" and job.job_type == "load"
    assert fake_bq.uploaded_bytes("up_res") == data
    assert fake_bq.job("up_res")["upload_bytes"] == size
    chunks = fake_bq.calls_for("upload_chunk")
    assert [c["status"] for c in chunks] == [308] * (len(chunks) - 1) + [200]
    assert len(chunks) == 3  # 512 KiB: two full chunks, then an empty "bytes */524288"
    with pytest.raises(gexc.Conflict):
        bq_client.load_table_from_file(io.BytesIO(data), "ds.tbl", job_id="up_res")


# -- directives ---------------------------------------------------------------------------------
def test_directive_in_query_sets_behaviour(fake_bq, bq_client):
    fake_bq.clock.freeze()
    sql = 'SELECT 1 /* fakebq: {"pending_s": 0, "running_s": 2, "error": {"reason": "invalid", "message": "boom"}} */'
    job = query(bq_client, sql, "dir_1")
    fake_bq.clock.advance(1.9)
    job.reload()
    assert job.state == "RUNNING"
    fake_bq.clock.advance(0.1)
    job.reload()
    assert job.error_result == {"reason": "invalid", "message": "boom"}

    fake_bq.add_rule(job_id="^dir_2", error=None, running_s=5)  # a rule wins over the directive
    job = query(bq_client, sql, "dir_2")
    fake_bq.clock.advance(5)
    job.reload()
    assert job.state == "DONE" and job.error_result is None

    with pytest.raises(gexc.BadRequest, match="directive"):
        query(bq_client, "SELECT 1 /* fakebq: {running_s: 2} */", "dir_3")
    with pytest.raises(gexc.BadRequest, match="unknown behaviour field"):
        query(bq_client, 'SELECT 1 /* fakebq: {"runing_s": 2} */', "dir_4")


def test_behaviour_parsing_units():
    assert parse_directive("SELECT 1") is None
    assert parse_directive('/* fakebq: {"error": "stopped"} */')["error"]["reason"] == "stopped"
    assert Behaviour(error="invalid").error == {"reason": "invalid", "message": "Invalid query"}
    assert Behaviour().merged({"running_s": 1}).running_s == 1.0
    assert split_statements("SELECT ';'; -- x;\n SELECT 2 ; ;") == ["SELECT ';'", "-- x;\n SELECT 2"]


# -- faults ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,exc_type", [("429", gexc.TooManyRequests), ("500", gexc.InternalServerError),
                                           ("503", gexc.ServiceUnavailable)])
def test_status_faults_are_retried_by_the_client(fake_bq, bq_client, kind, exc_type):
    fake_bq.inject(kind, "insert", count=2)
    job = query(bq_client, "SELECT 1", f"st_{kind}", retry=FAST_RETRY)
    assert job.job_id == f"st_{kind}"
    inserts = fake_bq.calls_for("insert")
    assert [(c["status"], c["fault"]) for c in inserts] == [(int(kind), kind)] * 2 + [(200, None)]
    assert fake_bq.fault_counts[kind] == 2 and fake_bq.fault_counts[f"insert:{kind}"] == 2
    fake_bq.inject(kind, "get", count=1)
    with pytest.raises(exc_type) as info:
        bq_client.get_job(job.job_id, retry=None)
    assert reason_of(info.value) == ("rateLimitExceeded" if kind == "429" else "backendError")


def test_403_rate_limit_fault(fake_bq, bq_client):
    fake_bq.inject("403", "list", count=1)
    with pytest.raises(gexc.Forbidden) as info:
        list(bq_client.list_jobs(retry=None))
    assert reason_of(info.value) == "rateLimitExceeded"
    assert list(bq_client.list_jobs(retry=None)) == []


def test_reset_before_acting_creates_nothing(fake_bq, bq_client):
    fake_bq.inject("reset_before", "insert", count=1)
    with pytest.raises(requests.exceptions.ConnectionError, match="reset by peer"):  # a real TCP RST
        query(bq_client, "SELECT 1", "rb_1", retry=None)
    assert fake_bq.job("rb_1") is None
    call = fake_bq.calls_for("insert")[0]
    assert (call["status"], call["acted_status"], call["fault"]) == (None, None, "reset_before")
    query(bq_client, "SELECT 1", "rb_1", retry=None)  # nothing was created: a retry just works
    assert fake_bq.count_jobs("rb_") == 1


def test_reset_after_acting_insert_did_create_the_job(fake_bq, bq_client):
    fake_bq.inject("reset_after", "insert", count=1)
    with pytest.raises(requests.exceptions.ConnectionError, match="reset by peer"):
        query(bq_client, "SELECT 1", "ra_1", retry=None)
    assert fake_bq.job("ra_1") is not None
    call = fake_bq.calls_for("insert")[0]
    assert (call["status"], call["acted_status"], call["fault"]) == (None, 200, "reset_after")
    # The client's own retry then trips over its own job: that is the case to handle.
    fake_bq.inject("reset_after", "insert", count=1)
    with pytest.raises(gexc.Conflict):
        query(bq_client, "SELECT 1", "ra_2", retry=FAST_RETRY)
    assert fake_bq.count_jobs("ra_") == 2
    assert [c["status"] for c in fake_bq.calls_for("insert", job_id="ra_2")] == [None, 409]


def test_delayed_answer_outlives_client_timeout(fake_bq, bq_client):
    fake_bq.inject("delay", "insert", count=1, delay_s=0.6)
    with pytest.raises(requests.exceptions.Timeout):
        query(bq_client, "SELECT 1", "dl_1", retry=None, timeout=0.2)
    assert fake_bq.job("dl_1") is not None  # the server acted; only the answer was late


def test_404_right_after_409(fake_bq, bq_client):
    query(bq_client, "SELECT 1", "ec_1")
    fake_bq.inject("404_after_409", "insert", count=1)
    with pytest.raises(gexc.Conflict):
        query(bq_client, "SELECT 1", "ec_1", retry=None)
    with pytest.raises(gexc.NotFound):
        bq_client.get_job("ec_1", retry=None)
    assert bq_client.get_job("ec_1", retry=None).job_id == "ec_1"
    gets = fake_bq.calls_for("get", job_id="ec_1")
    assert [(c["status"], c["fault"]) for c in gets] == [(404, "404_after_409"), (200, None)]
    assert fake_bq.fault_counts == {"404_after_409": 1, "insert:404_after_409": 1}


def test_rate_faults_are_seeded_and_job_filtered(fake_bq):
    path = f"/bigquery/v2/projects/{PROJECT}/jobs"

    def pattern():
        return [raw(fake_bq, "GET", path)[0] for _ in range(30)]

    fake_bq.set_seed(7)
    fake_bq.inject("503", "list", rate=0.5)
    first = pattern()
    fake_bq.clear_faults()
    fake_bq.set_seed(7)
    fake_bq.inject("503", "list", rate=0.5)
    assert pattern() == first and 5 < first.count(503) < 25

    fake_bq.clear_faults()
    fake_bq.inject("500", "insert", job_id="^target")
    body = {"configuration": {"query": {"query": "SELECT 1"}}}
    assert raw(fake_bq, "POST", path, {**body, "jobReference": {"jobId": "other_1"}})[0] == 200
    assert raw(fake_bq, "POST", path, {**body, "jobReference": {"jobId": "target_1"}})[0] == 500


def test_upload_faults(fake_bq, bq_client, monkeypatch):
    monkeypatch.setattr("google.cloud.bigquery.client._DEFAULT_CHUNKSIZE", 256 * 1024)
    fake_bq.inject("503", "upload_chunk", count=1)
    with pytest.raises(gexc.ServiceUnavailable):
        bq_client.load_table_from_file(io.BytesIO(b"x" * 1000), "ds.t", job_id="uf_1", num_retries=0)
    assert fake_bq.job("uf_1") is None
    fake_bq.inject("reset_after", "upload", count=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        bq_client.load_table_from_file(io.BytesIO(b"y" * 10), "ds.t", job_id="uf_2", size=10, num_retries=0)
    assert fake_bq.uploaded_bytes("uf_2") == b"y" * 10


# -- query results, timeouts, dry run ------------------------------------------------------------
def test_query_result_waits_for_done_and_raises_failure(fake_bq, bq_client):
    fake_bq.set_defaults(pending_s=0, running_s=0.1)
    assert list(query(bq_client, "SELECT 1", "qr_ok").result(timeout=5)) == []
    fake_bq.add_rule(job_id="^qr_bad", error={"reason": "invalid", "message": "no such column"})
    with pytest.raises(gexc.BadRequest, match="no such column"):
        query(bq_client, "SELECT 1", "qr_bad").result(timeout=5)
    assert fake_bq.count_calls("query_results") <= 4


def test_job_timeout_ms_and_dry_run(fake_bq, bq_client):
    fake_bq.clock.freeze()
    fake_bq.add_rule(pending_s=0, running_s=100)
    job = query(bq_client, "SELECT 1", "to_1", job_config=bigquery.QueryJobConfig(job_timeout_ms=2000))
    fake_bq.clock.advance(2)
    job.reload()
    assert job.state == "DONE" and job.error_result["reason"] == "stopped"
    assert "timed out" in job.error_result["message"]

    dry = bq_client.query("SELECT 1", job_config=bigquery.QueryJobConfig(dry_run=True))
    assert dry.state == "DONE" and dry.total_bytes_processed == 0
    assert fake_bq.count_jobs() == 1


# -- control API and process mode ------------------------------------------------------------
def test_http_control_api_matches_python_handle(fake_bq, bq_client):
    remote = RemoteFakeBigQuery(fake_bq.url)
    remote.clock.freeze()
    assert fake_bq.clock.frozen
    rule_id = remote.add_rule(job_id="^rc_", running_s=10, pending_s=0)
    assert remote.rules[0]["id"] == rule_id
    remote.inject("503", "get", count=1)
    query(bq_client, "SELECT 1", "rc_1")
    assert remote.job("rc_1")["state"] == "RUNNING"
    remote.clock.advance(10)
    assert remote.job("rc_1")["state"] == "DONE"
    with pytest.raises(gexc.ServiceUnavailable):
        bq_client.get_job("rc_1", retry=None)
    assert remote.fault_counts["503"] == 1 and remote.call_counts == {"insert": 1, "get": 1}
    remote.set_defaults(running_s=7)
    assert fake_bq.state.defaults.running_s == 7
    with pytest.raises(Exception, match="unknown fault kind"):
        remote.inject("418")
    remote.reset()
    assert fake_bq.jobs == [] and fake_bq.calls == [] and not fake_bq.clock.frozen and fake_bq.rules == []


def test_subprocess_mode_with_emulator_host(monkeypatch):
    with FakeBigQueryProcess.start() as fake:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", fake.url)
        monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", fake.url)
        client = bigquery.Client(project=PROJECT, credentials=AnonymousCredentials())
        fake.clock.freeze()
        fake.add_rule(job_id="^proc_", pending_s=0, running_s=1)
        job = client.query("SELECT 1", job_id="proc_1", job_retry=None)
        assert job.state == "RUNNING"
        fake.clock.advance(1)
        job.reload()
        assert job.state == "DONE"
        client.load_table_from_file(io.BytesIO(b"abc"), "d.t", job_id="proc_up", size=3)
        assert fake.uploaded_bytes("proc_up") == b"abc"
        assert [j["job_id"] for j in fake.jobs] == ["proc_1", "proc_up"]
        assert fake.count_calls("insert") == 1
        client.close()
    assert fake.proc.returncode == 0
