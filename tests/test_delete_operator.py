"""The delete-metadata operator over real HTTP to the fake: DONE-only, waiting, child jobs, purge by labels."""

from datetime import datetime, timedelta, timezone

import pytest
from google.cloud import bigquery

from airflow_bqjobs._compat import AirflowException
from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.core.labels import airflow_labels
from airflow_bqjobs.operators.delete import BigQueryDeleteJobMetadataOperator
from tests.airflow_context import first_event, make_context, rebuild_trigger
from tests.compat import TaskDeferred, run_dag

DONE_NOW = {"pending_s": 0, "running_s": 0}
RUN_ID = "manual__2026-01-01T00:00:00+00:00"  # make_context's default run


pytestmark = pytest.mark.usefixtures("emulator")


def start(fake_bq, bq_client, job_id, query="SELECT 1", labels=None, **behaviour):
    if behaviour:
        fake_bq.add_rule(job_id=f"^{job_id}$", **behaviour)
    config = bigquery.QueryJobConfig(labels=labels or {})
    return bq_client.query(query, job_id=job_id, location="US", job_config=config, job_retry=None)


def delete(job_id=None, **kw):
    return BigQueryDeleteJobMetadataOperator(
        task_id="delete", job_id=job_id, project_id="test-project", poll_interval=0.05, **kw
    )


def outcomes(results):
    return [(e["job"]["jobId"], e["outcome"]) for e in results]


def purge_context(op, run_after=None):
    context = make_context(op)
    context["dag_run"].run_after = run_after or datetime.now(timezone.utc) - timedelta(minutes=1)
    return context


def test_deletes_done_jobs_in_every_form(fake_bq, bq_client):
    for job_id in ("a", "b", "c"):
        start(fake_bq, bq_client, job_id, **DONE_NOW)
    op = delete(["a", "US.b", {"projectId": "test-project", "location": "US", "jobId": "c"}, "test-project:US.a"])
    results = op.execute(make_context(op))
    assert outcomes(results) == [("a", "deleted"), ("b", "deleted"), ("c", "deleted")]
    assert results[0]["job"] == {"projectId": "test-project", "location": "US", "jobId": "a"}
    assert fake_bq.jobs == []


def test_running_job_is_refused_by_default_and_never_cancelled(fake_bq, bq_client):
    start(fake_bq, bq_client, "busy", running_s=60)
    start(fake_bq, bq_client, "finished", **DONE_NOW)
    op = delete(["busy", "finished"])
    with pytest.raises(AirflowException, match=r"1 of 2 job\(s\) could not be deleted:\n.*busy: refused \[not_done\].*wait_for_done=True"):
        op.execute(make_context(op))
    assert fake_bq.job("finished") is None  # the DONE one was still deleted
    busy = fake_bq.job("busy")
    assert busy["state"] != "DONE" and not busy["cancel_requested"]
    assert fake_bq.calls_for("cancel") == [] and {c["job_id"] for c in fake_bq.calls_for("delete")} == {"finished"}


def test_refused_is_only_reported_when_fail_on_refused_is_off(fake_bq, bq_client):
    start(fake_bq, bq_client, "busy", running_s=60)
    op = delete("busy", fail_on_refused=False)
    [entry] = op.execute(make_context(op))
    assert (entry["outcome"], entry["reason"]) == ("refused", "not_done")


def test_wait_for_done_sync_waits_then_deletes(fake_bq, bq_client):
    start(fake_bq, bq_client, "busy", running_s=0.4)
    op = delete("busy", wait_for_done=True)
    assert outcomes(op.execute(make_context(op))) == [("busy", "deleted")]
    assert fake_bq.jobs == [] and fake_bq.calls_for("cancel") == []


def test_wait_for_done_deferrable_one_trigger_at_a_time(fake_bq, bq_client):
    start(fake_bq, bq_client, "short", pending_s=0, running_s=0.2)
    start(fake_bq, bq_client, "long", pending_s=0, running_s=1.5)
    start(fake_bq, bq_client, "finished", **DONE_NOW)
    op = delete(["short", "long", "finished"], wait_for_done=True, deferrable=True)
    context = make_context(op)
    with pytest.raises(TaskDeferred) as first:
        op.execute(context)
    kwargs = first.value.trigger.serialize()[1]
    assert kwargs["job"]["jobId"] == "short" and kwargs["cancel_on_kill"] is False
    assert first.value.kwargs is None  # resuming re-reads BigQuery, nothing rides on the deferral
    with pytest.raises(TaskDeferred) as second:
        op.execute_complete(context, first_event(rebuild_trigger(first.value.trigger)))
    assert second.value.trigger.serialize()[1]["job"]["jobId"] == "long"
    assert fake_bq.calls_for("delete") == []  # nothing is deleted until every job is DONE
    results = op.execute_complete(context, first_event(rebuild_trigger(second.value.trigger)))
    assert outcomes(results) == [("short", "deleted"), ("long", "deleted"), ("finished", "deleted")]
    assert fake_bq.jobs == [] and fake_bq.calls_for("cancel") == []


def test_already_deleted_is_fine_unless_strict(fake_bq, bq_client):
    start(fake_bq, bq_client, "there", **DONE_NOW)
    op = delete(["gone", "there"])
    assert outcomes(op.execute(make_context(op))) == [("gone", "already_gone"), ("there", "deleted")]
    op = delete("there", strict=True)
    with pytest.raises(AirflowException, match=r"there: already_gone \[notFound\]"):
        op.execute(make_context(op))


def test_lost_answer_of_a_delete_counts_as_deleted_even_when_strict(fake_bq, bq_client):
    start(fake_bq, bq_client, "job", **DONE_NOW)
    fake_bq.inject("reset_after", "delete", count=1)  # acted, answer lost, retried -> 404
    op = delete("job", strict=True)
    assert outcomes(op.execute(make_context(op))) == [("job", "deleted")]
    assert [c["status"] for c in fake_bq.calls_for("delete")] == [None, 404]


def test_child_job_is_refused_with_bigquerys_reason_and_a_hint(fake_bq, bq_client):
    start(fake_bq, bq_client, "script", query="SELECT 1; SELECT 2", pending_s=0, running_s=0.1)
    fake_bq.clock.advance(1)
    child = fake_bq.job("script")["child_job_ids"][0]
    op = delete(child)
    with pytest.raises(AirflowException) as err:
        op.execute(make_context(op))
    message = str(err.value)
    assert f"{child}: refused [invalid]" in message and "child job" in message
    assert "delete its parent job test-project:US.script instead" in message
    assert fake_bq.job(child) is not None
    [entry] = delete(child, fail_on_refused=False).execute(make_context(op))
    assert (entry["outcome"], entry["reason"]) == ("refused", "invalid")


def test_deleting_the_parent_deletes_its_children(fake_bq, bq_client):
    start(fake_bq, bq_client, "script", query="SELECT 1; SELECT 2", pending_s=0, running_s=0.1)
    fake_bq.clock.advance(1)
    assert len(fake_bq.jobs) == 3
    op = delete("script")
    assert outcomes(op.execute(make_context(op))) == [("script", "deleted")]
    assert fake_bq.jobs == []


@pytest.mark.parametrize(
    "kwargs, field",
    [({"job_id": "a b"}, "job_id"), ({"job_id": []}, "job_id"), ({"job_id": "x", "location": "U S"}, "location"),
     ({"job_id": "x", "project_id": "Bad_Project"}, "project_id")],
)
def test_bad_input_fails_at_dag_parse_time(fake_bq, kwargs, field):
    with pytest.raises(InvalidJobInput) as err:
        BigQueryDeleteJobMetadataOperator(task_id="delete", **kwargs)
    assert err.value.field == field and fake_bq.calls == []


def test_job_id_and_purge_are_exclusive():
    with pytest.raises(InvalidJobInput, match="purge=True"):
        BigQueryDeleteJobMetadataOperator(task_id="d")
    with pytest.raises(InvalidJobInput, match="not both"):
        BigQueryDeleteJobMetadataOperator(task_id="d", job_id="x", purge=True)
    with pytest.raises(InvalidJobInput) as err:
        BigQueryDeleteJobMetadataOperator(task_id="d", job_id="x", purge_task_ids=["t"])
    assert err.value.field == "purge"


def labelled(fake_bq, bq_client, job_id, task="t1", run_id=RUN_ID, dag_id="test_dag", query="SELECT 1", **behaviour):
    start(fake_bq, bq_client, job_id, query=query, labels=airflow_labels(dag_id, task, run_id), **behaviour)


def test_purge_deletes_the_runs_done_jobs_and_fails_on_running_ones(fake_bq, bq_client):
    labelled(fake_bq, bq_client, "mine_done", **DONE_NOW)
    labelled(fake_bq, bq_client, "mine_script", task="t2", query="SELECT 1; SELECT 2", **DONE_NOW)
    assert len(fake_bq.job("mine_script")["child_job_ids"]) == 2
    labelled(fake_bq, bq_client, "mine_running", task="t2", pending_s=0, running_s=60)
    labelled(fake_bq, bq_client, "other_run", run_id="scheduled__2026-01-02", **DONE_NOW)
    labelled(fake_bq, bq_client, "other_dag", dag_id="another_dag", **DONE_NOW)
    start(fake_bq, bq_client, "unlabelled", **DONE_NOW)
    op = delete(purge=True)
    with pytest.raises(AirflowException, match=r"(?s)1 of 3 job\(s\).*mine_running: refused \[not_done\]"):
        op.execute(purge_context(op))
    left = {j["job_id"] for j in fake_bq.jobs}
    assert left == {"mine_running", "other_run", "other_dag", "unlabelled"}
    assert not fake_bq.job("mine_running")["cancel_requested"]


def test_purge_with_task_filter_and_report_only(fake_bq, bq_client):
    labelled(fake_bq, bq_client, "t1_job", task="t1", **DONE_NOW)
    labelled(fake_bq, bq_client, "t2_job", task="t2", **DONE_NOW)
    labelled(fake_bq, bq_client, "t2_running", task="t2", pending_s=0, running_s=60)
    op = delete(purge=True, purge_task_ids=["t2"], fail_on_refused=False)
    results = op.execute(purge_context(op))
    assert sorted(outcomes(results)) == [("t2_job", "deleted"), ("t2_running", "refused")]
    assert {j["job_id"] for j in fake_bq.jobs} == {"t1_job", "t2_running"}


def test_purge_of_another_dag_run_with_a_creation_bound(fake_bq, bq_client):
    labelled(fake_bq, bq_client, "old", dag_id="etl", run_id="scheduled__2026-01-02", **DONE_NOW)
    fake_bq.clock.advance(7200)
    labelled(fake_bq, bq_client, "recent", dag_id="etl", run_id="scheduled__2026-01-02", **DONE_NOW)
    bound = int((fake_bq.clock.now() - 60) * 1000)
    op = delete(purge=True, purge_dag_id="etl", purge_run_id="scheduled__2026-01-02", min_creation_time=str(bound))
    assert outcomes(op.execute(purge_context(op))) == [("recent", "deleted")]
    op = delete(purge=True, purge_dag_id="etl", purge_run_id="scheduled__2026-01-02")
    assert outcomes(op.execute(purge_context(op))) == [("old", "deleted")]


def test_purge_of_the_current_run_starts_listing_at_its_run_after(fake_bq, bq_client):
    labelled(fake_bq, bq_client, "before_run", **DONE_NOW)  # same labels, but created an hour before the run
    fake_bq.clock.advance(3600)
    labelled(fake_bq, bq_client, "in_run", **DONE_NOW)
    run_after = datetime.fromtimestamp(fake_bq.clock.now() - 60, timezone.utc)
    op = delete(purge=True)
    assert outcomes(op.execute(purge_context(op, run_after))) == [("in_run", "deleted")]
    assert fake_bq.job("before_run") is not None


@pytest.mark.parametrize(
    "kwargs, field",
    [({"purge_task_ids": [""]}, "purge_task_ids"), ({"purge_task_ids": {"t": 1}}, "purge_task_ids"),
     ({"min_creation_time": "yesterday"}, "min_creation_time"), ({"purge_run_id": 5}, "purge_run_id")],
)
def test_purge_bad_input_fails_at_dag_parse_time(fake_bq, kwargs, field):
    with pytest.raises(InvalidJobInput) as err:
        delete(purge=True, **kwargs)
    assert err.value.field == field and fake_bq.calls == []


def test_transient_errors_are_retried(fake_bq, bq_client):
    labelled(fake_bq, bq_client, "job", **DONE_NOW)
    fake_bq.inject("500", "delete", count=2)
    fake_bq.inject("503", "list", count=1)
    op = delete(purge=True)
    assert outcomes(op.execute(purge_context(op))) == [("job", "deleted")]
    assert len(fake_bq.calls_for("delete", status=500)) == 2


DAG_ID = "bqjobs_manage_jobs"


def test_dag_cancel_delete_list_and_sensor_with_real_deferral(fake_bq, bq_client, register_dag, monkeypatch):
    """One real `dag.test()` run for the four operator families (triggers run in line, as in the triggerer)."""
    from airflow_bqjobs.operators.cancel import BigQueryCancelJobOperator
    from airflow_bqjobs.operators.list import BigQueryListJobsOperator
    from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator
    from airflow_bqjobs.sensors.job import BigQueryJobSensor
    from airflow_bqjobs.triggers.job import BigQueryJobTrigger
    from tests.compat import DAG, xcoms

    fake_bq.add_rule(job_id="^victim$", pending_s=0, running_s=60, cancel_s=1.0)
    fake_bq.add_rule(job_id="^theirs$", pending_s=0, running_s=60, user_email="other-team@example.com")
    triggered = []
    real_run = BigQueryJobTrigger.run

    async def run(self):
        """Record which jobs were awaited in a trigger; let the other team's job finish once its wait began."""
        triggered.append(self.ref.job_id)
        if self.ref.job_id == "theirs":
            fake_bq.clock.advance(120)  # the cancel task ran before: every other job is DONE already
        async for event in real_run(self):
            yield event

    monkeypatch.setattr(BigQueryJobTrigger, "run", run)
    bq_client.query("SELECT 1", job_id="victim", location="US", job_retry=None)
    bq_client.query("SELECT 2", job_id="theirs", location="US", job_retry=None)

    def query(sql):
        return {"query": {"query": sql, "useLegacySql": False}}

    common = {"project_id": "test-project", "poll_interval": 0.05}
    day = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with DAG(DAG_ID, schedule=None, start_date=day, catchup=False) as dag:
        mapped = BigQuerySubmitJobOperator.partial(task_id="mapped", **common).expand(
            configuration=[query("SELECT 'a'"), query("SELECT 'b'")]
        )
        single = BigQuerySubmitJobOperator(task_id="single", configuration=query("SELECT 'c'"), **common)
        listed = BigQueryListJobsOperator(
            task_id="list", project_id="test-project", labels={"airflow-dag": DAG_ID},
            min_creation_time="{{ dag_run.start_date }}", state_filter="done",
        )
        cancel = BigQueryCancelJobOperator(
            task_id="cancel", job_id=[single.output, "test-project:US.victim"], deferrable=True, **common
        )
        delete_mapped = BigQueryDeleteJobMetadataOperator(task_id="delete_mapped", job_id=mapped.output, **common)
        purge = BigQueryDeleteJobMetadataOperator(task_id="purge", purge=True, purge_task_ids=["single"], **common)
        sense = BigQueryJobSensor(
            task_id="sense", job_id={"jobId": "theirs", "location": "US"}, project_id="test-project",
            deferrable=True, poke_interval=0.05, timeout=60,
        )
        [mapped, single] >> listed >> delete_mapped
        [listed, cancel] >> purge
        cancel >> sense
    register_dag(dag)
    run = run_dag(dag, day)

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert set(states.values()) == {"success"}, states
    xcom = xcoms(run)

    single_id = xcom[("single", -1, "return_value")]["jobId"]
    mapped_ids = {xcom[("mapped", i, "return_value")]["jobId"] for i in (0, 1)}
    assert {s["job_id"] for s in xcom[("list", -1, "return_value")]} == mapped_ids | {single_id}
    assert [(e["job"]["jobId"], e["outcome"]) for e in xcom[("cancel", -1, "return_value")]] == [
        (single_id, "succeeded"), ("victim", "cancelled"),
    ]
    assert {e["job"]["jobId"] for e in xcom[("delete_mapped", -1, "return_value")]} == mapped_ids
    assert [(e["job"]["jobId"], e["outcome"]) for e in xcom[("purge", -1, "return_value")]] == [(single_id, "deleted")]
    assert xcom[("sense", -1, "return_value")] == {"projectId": "test-project", "location": "US", "jobId": "theirs"}
    assert xcom[("sense", -1, "job_summary")]["state"] == "DONE"
    left = {j["job_id"]: j for j in fake_bq.jobs}
    assert set(left) == {"victim", "theirs"}
    assert left["victim"]["error_result"]["reason"] == "stopped"
    assert left["theirs"]["error_result"] is None and not left["theirs"]["cancel_requested"]
    assert {c["job_id"] for c in fake_bq.calls_for("cancel")} == {"victim"}
    assert triggered == ["victim", "theirs"]  # both waits really went through a trigger
