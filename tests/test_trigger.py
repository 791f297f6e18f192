"""BigQueryJobTrigger over real HTTP: transient errors only delay it; permanent ones end it with an error event."""


from airflow_bqjobs.core.job_ref import JobRef
from airflow_bqjobs.triggers.job import BigQueryJobTrigger
from tests.airflow_context import first_event, rebuild_trigger

QUERY = {"query": {"query": "SELECT 1", "useLegacySql": False}}


def trigger_for(ref: dict, **kw):
    kw.setdefault("poll_interval", 0.05)
    return BigQueryJobTrigger(job=ref, gcp_conn_id="no_such_conn", **kw)


def test_waits_until_done_and_reports_the_error_result(fake_bq, hook):
    fake_bq.add_rule(running_s=0.5, error={"reason": "invalid", "message": "bad"})
    ref = hook.insert_job(JobRef("j1"), QUERY)["jobReference"]
    event = first_event(trigger_for(ref))
    assert event == {"status": "done", "job": ref, "error_result": {"reason": "invalid", "message": "bad"}}
    # The shared poller's lists saw it running; one read once it left the list.
    assert len(fake_bq.calls_for("get")) == 1 and len(fake_bq.calls_for("list")) >= 2


def test_transient_errors_never_fail_the_wait(fake_bq, hook):
    fake_bq.add_rule(running_s=0.3)
    ref = hook.insert_job(JobRef("j2"), QUERY)["jobReference"]
    for kind in ("429", "500", "503", "reset_before", "403"):
        fake_bq.inject(kind, "get", count=1)
    fake_bq.inject("503", "list", rate=1.0)  # the list keeps failing: every check is a jobs.get
    event = first_event(trigger_for(ref, poll_interval=0.5))
    assert event["status"] == "done" and event["error_result"] is None
    assert sum(fake_bq.fault_counts.get(f"get:{k}", 0) for k in ("429", "500", "503", "reset_before", "403")) == 5


def test_request_timeouts_are_transient(fake_bq, hook):
    ref = hook.insert_job(JobRef("j3"), QUERY)["jobReference"]
    fake_bq.inject("delay", "get", count=1, delay_s=1.0)
    event = first_event(trigger_for(ref, request_timeout=0.2, poll_interval=0.2))
    assert event["status"] == "done"


def test_missing_job_and_permanent_errors_end_with_an_error_event(fake_bq, hook, monkeypatch):
    import airflow_bqjobs.triggers.job as trigger_module

    monkeypatch.setattr(trigger_module, "READ_AFTER_CONFLICT_DELAYS", (0.05, 0.05))  # the re-reads, not 7.75 s of them
    event = first_event(trigger_for({"projectId": "test-project", "jobId": "never_inserted"}))
    assert event["status"] == "error" and "not found" in event["message"]


def test_rebuilt_from_serialised_kwargs_holds_no_credentials(fake_bq, hook):
    fake_bq.add_rule(running_s=0.3)
    ref = hook.insert_job(JobRef("j4", location="US"), QUERY)["jobReference"]
    trigger = trigger_for(ref, deadline=None)
    _, kwargs = trigger.serialize()
    assert kwargs["job"] == {"projectId": "test-project", "location": "US", "jobId": "j4"}
    assert not {"credentials", "keyfile_dict", "key_path", "token"} & set(kwargs)
    assert first_event(rebuild_trigger(trigger))["status"] == "done"


def test_one_client_for_every_trigger_of_a_connection(fake_bq, hook, mocker):
    import asyncio

    from google.cloud import bigquery

    from airflow_bqjobs.hooks import shared

    shared.reset()
    fake_bq.add_rule(running_s=0.4)
    refs = [hook.insert_job(JobRef(f"j5_{i}"), QUERY)["jobReference"] for i in range(3)]
    made = mocker.spy(bigquery, "Client")

    async def wait_all():
        async def one(ref):
            async for event in trigger_for(ref).run():
                return event.payload["status"]
        return await asyncio.gather(*(one(ref) for ref in refs))

    assert asyncio.run(asyncio.wait_for(wait_all(), 30)) == ["done"] * 3
    assert made.call_count == 1 and len(fake_bq.calls_for("get")) == 3
