"""The cancel operator over real HTTP to the fake: bq cancel / --nosync, every job_id form, deferral."""

import pytest

from airflow_bqjobs._compat import AirflowException
from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.operators.cancel import BigQueryCancelJobOperator
from tests.airflow_context import first_event, make_context, rebuild_trigger
from tests.compat import TaskDeferred, task_log_lines

LONG = {"pending_s": 0, "running_s": 60}


pytestmark = pytest.mark.usefixtures("emulator")


def start(fake_bq, bq_client, job_id, location="US", **behaviour):
    """Another user's job, inserted with the real client (as `bq query` would)."""
    if behaviour:
        fake_bq.add_rule(job_id=f"^{job_id}$", **behaviour)
    return bq_client.query("SELECT 1", job_id=job_id, location=location, job_retry=None)


def cancel(job_id, **kw):
    return BigQueryCancelJobOperator(task_id="cancel", job_id=job_id, project_id="test-project", poll_interval=0.05, **kw)


def ref(job_id, location="US"):
    return {"projectId": "test-project", "location": location, "jobId": job_id}


def resume(op, context, deferred):
    """The triggerer's part: rebuild the trigger from its kwargs, run it, resume with its event only."""
    assert deferred.kwargs is None  # nothing carried through the deferral: resuming re-reads BigQuery
    event = first_event(rebuild_trigger(deferred.trigger))
    return getattr(op, deferred.method_name)(context, event)


def test_cancels_a_running_job_and_waits_until_it_is_stopped(fake_bq, bq_client):
    start(fake_bq, bq_client, "victim", **LONG, cancel_s=0.3)
    op = cancel("victim")
    [entry] = op.execute(make_context(op))
    assert entry["job"] == ref("victim")
    assert (entry["outcome"], entry["state"]) == ("cancelled", "DONE")
    assert entry["error_result"]["reason"] == "stopped"
    assert fake_bq.job("victim")["state"] == "DONE"
    assert len(fake_bq.calls_for("cancel")) == 1


def test_nosync_returns_cancel_pending_at_once(fake_bq, bq_client, capsys, caplog):
    start(fake_bq, bq_client, "victim", **LONG, cancel_s=30)
    op = cancel("victim", wait=False)
    [entry] = op.execute(make_context(op))
    assert (entry["outcome"], entry["state"]) == ("cancel_pending", "RUNNING")
    assert fake_bq.job("victim")["cancel_requested"] and fake_bq.job("victim")["state"] == "RUNNING"
    assert len(fake_bq.calls_for("get")) == 1  # no waiting
    assert any("cancellation pending" in line for line in task_log_lines(capsys, caplog))


@pytest.mark.parametrize(
    "behaviour, outcome, reason",
    [({}, "succeeded", None), ({"error": {"reason": "invalid", "message": "Syntax error"}}, "failed", "invalid")],
)
def test_done_job_is_a_noop_that_says_so(fake_bq, bq_client, capsys, caplog, behaviour, outcome, reason):
    start(fake_bq, bq_client, "finished", pending_s=0, running_s=0, **behaviour)
    op = cancel("finished")
    [entry] = op.execute(make_context(op))
    assert entry["outcome"] == outcome
    assert (entry["error_result"] or {}).get("reason") == reason
    assert fake_bq.calls_for("cancel") == []
    assert any("already DONE" in line for line in task_log_lines(capsys, caplog))


@pytest.mark.parametrize(
    "behaviour, outcome, reason",
    [({}, "succeeded", None), ({"error": {"reason": "invalidQuery", "message": "bad"}}, "failed", "invalidQuery")],
)
def test_job_that_finishes_before_the_cancel_takes_effect(fake_bq, bq_client, behaviour, outcome, reason):
    start(fake_bq, bq_client, "racer", running_s=0.3, cancel_s=30, **behaviour)
    op = cancel("racer")
    [entry] = op.execute(make_context(op))
    assert (entry["outcome"], entry["state"]) == (outcome, "DONE")
    assert (entry["error_result"] or {}).get("reason") == reason
    assert len(fake_bq.calls_for("cancel")) == 1


def test_every_job_id_form_and_a_list_with_duplicates(fake_bq, bq_client):
    for job_id in ("a", "b", "c", "d"):
        start(fake_bq, bq_client, job_id, **LONG, cancel_s=0)
    start(fake_bq, bq_client, "e", location="EU", **LONG, cancel_s=0)
    forms = ["a", "US.b", "test-project:US.c", ref("d"), "EU.e", "test-project:US.a"]
    op = cancel(forms, location="US")
    results = op.execute(make_context(op))
    assert [e["job"] for e in results] == [ref("a"), ref("b"), ref("c"), ref("d"), ref("e", "EU")]
    assert {e["outcome"] for e in results} == {"cancelled"}
    assert len(fake_bq.calls_for("cancel")) == 5


def test_missing_job_fails_clearly_after_cancelling_the_others(fake_bq, bq_client):
    start(fake_bq, bq_client, "exists", **LONG)
    op = cancel(["exists", "EU.exists", "nope"])
    with pytest.raises(AirflowException, match=r"No such job: test-project:EU\.exists, test-project:nope .*missing_ok"):
        op.execute(make_context(op))
    assert fake_bq.job("exists")["cancel_requested"]


def test_missing_ok_reports_not_found(fake_bq, bq_client):
    start(fake_bq, bq_client, "exists", **LONG, cancel_s=0.1)
    op = cancel(["nope", "exists"], missing_ok=True)
    results = op.execute(make_context(op))
    assert [(e["job"]["jobId"], e["outcome"]) for e in results] == [("nope", "not_found"), ("exists", "cancelled")]


@pytest.mark.parametrize(
    "job_id, field",
    [("bad id!", "job_id"), ([], "job_id"), (["ok", 7], "job_id[1]"), ("p:", "job_id"), ("{'jobId': ", "job_id"),
     ({"location": "US"}, "job_id")],
)
def test_bad_job_id_fails_at_dag_parse_time(fake_bq, job_id, field):
    with pytest.raises(InvalidJobInput) as err:
        cancel(job_id)
    assert err.value.field == field
    assert fake_bq.calls == []


def test_templated_xcom_pull_text_of_a_mapped_submit_is_accepted(fake_bq, bq_client):
    """`"{{ ti.xcom_pull('submit') }}"` renders the list of reference dicts as text."""
    start(fake_bq, bq_client, "m0", **LONG, cancel_s=0)
    start(fake_bq, bq_client, "m1", **LONG, cancel_s=0)
    op = cancel(str([ref("m0"), ref("m1")]))
    assert [e["outcome"] for e in op.execute(make_context(op))] == ["cancelled", "cancelled"]


def test_lists_inside_the_list_are_flattened(fake_bq, bq_client):
    """`[single.output, mapped.output]` renders as a dict and a (lazy) sequence of dicts; an empty mapped task adds none."""
    for job_id in ("n0", "n1", "n2"):
        start(fake_bq, bq_client, job_id, **LONG, cancel_s=0)
    op = cancel([ref("n0"), (ref("n1"), "US.n2"), []])
    assert [(e["job"]["jobId"], e["outcome"]) for e in op.execute(make_context(op))] == [
        ("n0", "cancelled"), ("n1", "cancelled"), ("n2", "cancelled"),
    ]


def test_transient_errors_are_retried_not_failures(fake_bq, bq_client):
    start(fake_bq, bq_client, "victim", **LONG, cancel_s=0.1)
    fake_bq.inject("503", "cancel", count=2)
    fake_bq.inject("429", "get", count=2)
    op = cancel("victim")
    [entry] = op.execute(make_context(op))
    assert entry["outcome"] == "cancelled"
    assert len(fake_bq.calls_for("cancel", status=503)) == 2 and len(fake_bq.calls_for("cancel", status=200)) == 1


def test_deferrable_requests_all_cancels_then_defers_on_one_job_at_a_time(fake_bq, bq_client):
    start(fake_bq, bq_client, "quick", **LONG, cancel_s=0.2)
    start(fake_bq, bq_client, "slow", **LONG, cancel_s=1.5)
    start(fake_bq, bq_client, "done", pending_s=0, running_s=0)
    op = cancel(["quick", "slow", "done"], deferrable=True)
    context = make_context(op)
    with pytest.raises(TaskDeferred) as first:
        op.execute(context)
    assert {c["job_id"] for c in fake_bq.calls_for("cancel")} == {"quick", "slow"}  # all requested up front
    classpath, kwargs = first.value.trigger.serialize()
    assert kwargs["job"] == ref("quick") and kwargs["cancel_on_kill"] is False
    with pytest.raises(TaskDeferred) as second:
        resume(op, context, first.value)
    assert second.value.trigger.serialize()[1]["job"] == ref("slow")
    results = resume(op, context, second.value)
    assert [(e["job"]["jobId"], e["outcome"]) for e in results] == [
        ("quick", "cancelled"), ("slow", "cancelled"), ("done", "succeeded"),
    ]
    assert len(fake_bq.calls_for("cancel")) == 2


@pytest.mark.parametrize("missing_ok, outcome", [(True, "not_found"), (False, None)])
def test_deferrable_resume_when_metadata_was_deleted_meanwhile(fake_bq, bq_client, missing_ok, outcome):
    start(fake_bq, bq_client, "victim", **LONG, cancel_s=0.2)
    op = cancel("victim", deferrable=True, missing_ok=missing_ok)
    context = make_context(op)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    event = first_event(rebuild_trigger(deferred.value.trigger))
    bq_client.delete_job_metadata("victim", location="US")
    if missing_ok:
        assert [e["outcome"] for e in op.execute_complete(context, event)] == [outcome]
    else:
        with pytest.raises(AirflowException, match="No such job: test-project:victim .*metadata was deleted"):
            op.execute_complete(context, event)


def test_trigger_timeout_event_fails_the_task(fake_bq, bq_client):
    start(fake_bq, bq_client, "victim", **LONG, cancel_s=30)
    op = cancel("victim", deferrable=True)
    context = make_context(op)
    with pytest.raises(TaskDeferred):
        op.execute(context)
    event = {"status": "timeout", "job": ref("victim"), "message": "Deadline passed while waiting for job victim"}
    with pytest.raises(AirflowException, match="timed out"):
        op.execute_complete(context, event)
