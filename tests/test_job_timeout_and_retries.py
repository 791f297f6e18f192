"""Issue 7 cases 7 (jobTimeoutMs versus reattaching) and 8 (no silent ten-minute hang), over real HTTP."""

import socket
import time
from datetime import timedelta

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.hooks.jobs import BigQueryJobsHook
from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator
from tests.airflow_context import make_context
from tests.compat import task_log_lines

QUERY = {"query": {"query": "SELECT 1", "useLegacySql": False}}
OWN_TIMEOUT = {"query": {"query": "SELECT 1", "useLegacySql": False}, "jobTimeoutMs": "5000"}
TEN_MIN = timedelta(minutes=10)


def submit(configuration=QUERY, **kw):
    kw.setdefault("retries", 2)
    return BigQuerySubmitJobOperator(
        task_id="t", configuration=configuration, project_id="test-project", poll_interval=0.05, **kw
    )


# -- case 7 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cancel_on_kill", "execution_timeout", "configuration", "expected"),
    [
        # the job may not outlive a try that timed out: BigQuery stops it after that long too
        (True, TEN_MIN, QUERY, "600000"),
        # the user lets the job outlive its try (a retry reattaches): no server-side limit added
        (False, TEN_MIN, QUERY, None),
        # no execution_timeout: nothing to derive a limit from
        (True, None, QUERY, None),
        (False, None, QUERY, None),
        # the user's own jobTimeoutMs always wins
        (True, TEN_MIN, OWN_TIMEOUT, "5000"),
        (False, TEN_MIN, OWN_TIMEOUT, "5000"),
        (True, None, OWN_TIMEOUT, "5000"),
        (False, None, OWN_TIMEOUT, "5000"),
    ],
)
def test_case7_job_timeout_ms_per_combination(cancel_on_kill, execution_timeout, configuration, expected):
    op = submit(configuration, cancel_on_kill=cancel_on_kill, execution_timeout=execution_timeout)
    assert op.build_job(make_context(op))[1].get("jobTimeoutMs") == expected


def test_case7_job_timeout_ms_cancel_on_kill_false_job_outlives_the_try_and_a_retry_gets_its_result(
    emulator, fake_bq
):
    """A 100 s job, a 60 s execution_timeout, cancel_on_kill=False: try 1 times out (the job is left
    running, as asked); BigQuery must not stop it at 60 s; try 2 reattaches and takes its result."""
    fake_bq.clock.freeze()
    fake_bq.add_rule(pending_s=0, running_s=100)
    op = submit(cancel_on_kill=False, execution_timeout=timedelta(seconds=60), deferrable=True)
    with pytest.raises(TaskDeferred):
        op.execute(make_context(op, try_number=1))
    fake_bq.clock.advance(70)  # try 1's deadline passed; it left the job running
    (job,) = fake_bq.jobs
    assert job["state"] == "RUNNING", job["error_result"]
    fake_bq.clock.advance(40)
    retry = submit(cancel_on_kill=False, execution_timeout=timedelta(seconds=60))
    assert retry.execute(make_context(retry, try_number=2))["jobId"] == job["job_id"]
    (done,) = fake_bq.jobs
    assert done["state"] == "DONE" and done["error_result"] is None


# -- case 8 ------------------------------------------------------------------------------------


def test_case8_transient_retries_every_retry_logged_with_reason_and_next_delay():
    from airflow_bqjobs.core.retrying import call_with_retry

    lines, calls = [], []

    class Unavailable(Exception):
        code = 503
        errors = [{"reason": "backendError"}]

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise Unavailable("Service Unavailable")
        return "ok"

    result = call_with_retry(flaky, deadline=60, what="GET /jobs/x", delays=iter([1.5, 3.0]), sleep=lambda s: None,
                             log=lines.append)
    assert result == "ok" and len(lines) == 2
    assert "GET /jobs/x" in lines[0] and "HTTP 503 backendError" in lines[0] and "retrying in 1.5 s" in lines[0]
    assert "retrying in 3.0 s" in lines[1]


def test_case8_transient_retries_stop_at_the_deadline_naming_it():
    from airflow_bqjobs.core.retrying import RetryDeadlineExceeded, call_with_retry

    clock = iter(range(0, 1000, 10))
    with pytest.raises(RetryDeadlineExceeded, match=r"over 25 s \(retry_deadline\).*ConnectionError"):
        call_with_retry(lambda: (_ for _ in ()).throw(ConnectionError("reset")), deadline=25,
                        delays=iter([10.0] * 10), sleep=lambda s: None, clock=lambda: next(clock))


def test_case8_transient_retries_logged_over_http(emulator, fake_bq, capsys, caplog):
    fake_bq.inject("503", "get", count=2)
    op = submit()
    op.execute(make_context(op))
    retries = [line for line in task_log_lines(capsys, caplog) if "Transient error on GET" in line]
    assert len(retries) == 2 and all("HTTP 503" in line and "retrying in" in line for line in retries)


def test_case8_retry_deadline_set_from_the_operator_and_bounded_by_execution_timeout():
    assert submit(retry_deadline=30).make_hook().retry.deadline == 30
    bounded = submit(retry_deadline=300, execution_timeout=timedelta(seconds=20))
    policy = bounded.make_hook(make_context(bounded)).retry
    assert 15 < policy.deadline <= 20 and policy.limit == "the try's remaining execution_timeout"
    with pytest.raises(InvalidJobInput, match="retry_deadline"):
        submit(retry_deadline=0)


def test_case8_retry_deadline_ends_an_outage_with_a_clear_error(emulator, fake_bq, monkeypatch):
    from airflow_bqjobs.core.retrying import RetryDeadlineExceeded

    monkeypatch.setattr(BigQueryJobsHook, "backoff_initial", 0.05)
    fake_bq.inject("503", "get")
    op = submit(retry_deadline=1)
    started = time.monotonic()
    with pytest.raises(RetryDeadlineExceeded, match=r"retry_deadline.*HTTP 503"):
        op.execute(make_context(op))
    assert time.monotonic() - started < 10 and fake_bq.count_calls("insert") == 0


def test_case8_refused_emulator_endpoint_stops_at_once(monkeypatch):
    from airflow_bqjobs.core.retrying import EmulatorUnreachable

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    op = submit()
    started = time.monotonic()
    with pytest.raises(EmulatorUnreachable, match=rf"127\.0\.0\.1:{port}.*refuses connections"):
        op.execute(make_context(op))
    assert time.monotonic() - started < 5
