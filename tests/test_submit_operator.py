"""The submit operator end to end over real HTTP: sync and deferrable paths, retries, clears, races."""

import pytest

from airflow_bqjobs.core.errors import InvalidJobInput, JobFailed
from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator
from airflow_bqjobs.triggers.job import BigQueryJobTrigger
from tests.airflow_context import first_event, make_context, rebuild_trigger
from tests.compat import TaskDeferred, task_log_lines

QUERY = {"query": {"query": "SELECT 1", "useLegacySql": False}}


pytestmark = pytest.mark.usefixtures("emulator")


def submit(task_id="load", deferrable=False, configuration=QUERY, **kw):
    kw.setdefault("retries", 2)
    return BigQuerySubmitJobOperator(
        task_id=task_id, configuration=configuration, project_id="test-project", deferrable=deferrable, poll_interval=0.05, **kw
    )


def run_deferred(op, context):
    """One deferrable attempt as Airflow runs it: execute, trigger in the triggerer, resume."""
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    event = first_event(rebuild_trigger(deferred.value.trigger))
    return getattr(op, deferred.value.method_name)(context, event)


def only_job(fake_bq):
    (job,) = fake_bq.jobs
    return job


def test_sync_success_returns_reference_and_pushes_summary(fake_bq):
    op = submit()
    context = make_context(op)
    ref = op.execute(context)
    job = only_job(fake_bq)
    assert ref == {"projectId": "test-project", "location": "US", "jobId": job["job_id"]}
    assert job["job_id"].startswith("airflow_test_dag_load_manual__2026-01-01T00_00_00_00_00_")
    summary = context["ti"].xcom["job_summary"]
    assert (summary["state"], summary["job_id"], summary["job_type"]) == ("DONE", job["job_id"], "query")
    assert job["labels"] == {"airflow-dag": "test_dag", "airflow-task": "load", "airflow-run": "manual__2026-01-01t00_00_00_00_00"}


def test_failed_job_fails_with_bigquerys_reason(fake_bq):
    fake_bq.add_rule(error={"reason": "invalid", "message": "Syntax error at [1:8]"})
    op = submit()
    with pytest.raises(JobFailed, match=r"failed: \[invalid\] Syntax error at \[1:8\]"):
        op.execute(make_context(op))


def test_non_fatal_errors_are_warnings(fake_bq, capsys, caplog):
    fake_bq.add_rule(errors=[{"reason": "invalid", "message": "row 7 skipped"}])
    op = submit()
    op.execute(make_context(op))
    warnings = [line for line in task_log_lines(capsys, caplog) if "[warning" in line]
    assert any("non-fatal error" in line and "row 7 skipped" in line for line in warnings)


def test_deferrable_path_defers_with_no_credentials_and_completes(fake_bq):
    fake_bq.add_rule(running_s=0.5)
    op = submit(deferrable=True)
    context = make_context(op)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, BigQueryJobTrigger)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_bqjobs.triggers.job.BigQueryJobTrigger"
    assert set(kwargs) == {"job", "gcp_conn_id", "poll_interval", "deadline", "cancel_on_kill", "request_timeout",
                           "reattach_on_clear", "not_found_ok", "deferred_try"}
    assert only_job(fake_bq)["state"] != "DONE"
    event = first_event(rebuild_trigger(trigger))
    assert event["status"] == "done"
    assert op.execute_complete(context, event)["jobId"] == only_job(fake_bq)["job_id"]


def test_the_scenario_attempt_dies_after_insert_retry_reattaches(fake_bq):
    """Attempt 1 inserts the job and dies before it finishes; attempt 2 reattaches; one job exists."""
    fake_bq.add_rule(running_s=0.5)
    op = submit(deferrable=True)
    with pytest.raises(TaskDeferred):
        op.execute(make_context(op, try_number=1))  # worker dies here: trigger never runs
    assert len(fake_bq.calls_for("insert")) == 1
    xcom = {}
    ref = run_deferred(op, make_context(op, try_number=2, xcom=xcom))
    assert len(fake_bq.calls_for("insert")) == 1
    job = only_job(fake_bq)
    assert ref["jobId"] == job["job_id"] and job["state"] == "DONE" and job["error_result"] is None
    assert xcom["job_summary"]["job_id"] == job["job_id"]


def test_sync_attempt_dies_while_polling_retry_reattaches(fake_bq):
    fake_bq.add_rule(running_s=0.3)
    op = submit()
    hook = op.make_hook()
    base, config = op.build_job(make_context(op))
    hook.insert_job(hook.resolve(base), config)  # what attempt 1 did before the worker was killed
    op.execute(make_context(op, try_number=2))
    assert fake_bq.count_jobs() == 1 and len(fake_bq.calls_for("insert")) == 1


def test_retry_after_success_inserts_nothing(fake_bq):
    op = submit()
    first = op.execute(make_context(op))
    again = op.execute(make_context(op, try_number=2))
    assert first == again and fake_bq.count_jobs() == 1


def test_retry_after_failure_runs_the_next_generation_once(fake_bq):
    fake_bq.add_rule(error={"reason": "jobBackendError", "message": "try again"}, times=1)
    op = submit()
    with pytest.raises(JobFailed):
        op.execute(make_context(op))
    ref = op.execute(make_context(op, try_number=2))
    assert ref["jobId"].endswith("_1")
    assert op.execute(make_context(op, try_number=3)) == ref
    assert sorted(j["job_id"][-2:] for j in fake_bq.jobs) == [ref["jobId"][-2:], only_base_suffix(fake_bq)]


def only_base_suffix(fake_bq):
    return min((j["job_id"] for j in fake_bq.jobs), key=len)[-2:]


def test_cancelled_job_rerun_or_fail(fake_bq):
    fake_bq.add_rule(error={"reason": "stopped", "message": "cancelled"}, times=1)
    op = submit(rerun_cancelled=False)
    with pytest.raises(JobFailed):
        op.execute(make_context(op))
    with pytest.raises(JobFailed, match="stopped"):
        op.execute(make_context(op, try_number=2))
    assert fake_bq.count_jobs() == 1
    rerun = submit(rerun_cancelled=True)
    assert rerun.execute(make_context(rerun, try_number=3))["jobId"].endswith("_1")


def test_clear_starts_a_new_job_unless_reattach_on_clear(fake_bq):
    op = submit()
    first = op.execute(make_context(op))
    # a task clear after try 1: Airflow sets max_tries = try_number + retries
    cleared = op.execute(make_context(op, try_number=2, max_tries=1 + 2))
    assert cleared != first and fake_bq.count_jobs() == 2
    # its own retries reattach to the new job
    assert op.execute(make_context(op, try_number=3, max_tries=3)) == cleared
    sticky = submit(task_id="sticky", reattach_on_clear=True)
    a = sticky.execute(make_context(sticky))
    assert sticky.execute(make_context(sticky, try_number=2, max_tries=3, clear_number=1)) == a


def test_mapped_instances_get_their_own_jobs(fake_bq):
    op = submit()
    refs = {op.execute(make_context(op, map_index=i))["jobId"] for i in range(3)}
    assert len(refs) == 3 and all("_m" in r for r in refs)


def test_transient_errors_everywhere_do_not_fail_the_task(fake_bq):
    fake_bq.add_rule(running_s=3)
    for endpoint in ("get", "insert"):
        fake_bq.inject("503", endpoint, count=2)
        fake_bq.inject("reset_before", endpoint, count=1)
    fake_bq.inject("reset_after", "insert", count=1)
    fake_bq.inject("404_after_409", "insert", count=1)
    op = submit(deferrable=True)
    ref = run_deferred(op, make_context(op))
    assert fake_bq.count_jobs() == 1 and ref["jobId"] == only_job(fake_bq)["job_id"]


def test_templated_configuration_from_files(fake_bq, tmp_path):
    """A .json file is the whole configuration; a .sql string inside a dict configuration is read as a file."""
    (tmp_path / "q.sql").write_text("SELECT '{{ params.x }}'")
    (tmp_path / "job.json").write_text('{"query": {"query": "SELECT \'{{ params.x }}\'", "useLegacySql": false}}')
    from tests.compat import DAG

    with DAG("templated", schedule=None, template_searchpath=[str(tmp_path)], params={"x": "hello"}):
        from_json = submit(task_id="from_json", configuration="job.json")
        from_sql = submit(task_id="from_sql", configuration={"query": {"query": "q.sql", "useLegacySql": False}})
    for task in (from_json, from_sql):
        context = {**make_context(task), "params": {"x": "hello"}}
        task.render_template_fields(context)
        task.execute(context)
    assert [j["query"] for j in fake_bq.jobs] == ["SELECT 'hello'", "SELECT 'hello'"]


def test_bad_input_fails_before_anything_is_sent(fake_bq):
    with pytest.raises(InvalidJobInput, match="configuration: must hold exactly one job type"):
        submit(configuration={"query": {}, "load": {}})
    with pytest.raises(ValueError, match="job_id and job_id_prefix"):
        submit(job_id="x", job_id_prefix="y")
    with pytest.raises(InvalidJobInput, match="labels"):
        submit(labels={"Bad Key": "x"})
    assert fake_bq.calls == []


def test_operators_import_no_google_cloud():
    import subprocess
    import sys

    code = (
        "import sys, airflow_bqjobs.operators, airflow_bqjobs.triggers.job;"
        "heavy=[m for m in sys.modules if m.startswith('google.cloud') or m.split('.')[0] in ('aiohttp','pandas','pyarrow')];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
