"""Bad input, table-driven: each case fails with an :class:`InvalidJobInput` that names the field,
and nothing at all reaches the server (so certainly no insert or upload).

Cases run through the real operator lifecycle (construction, then one attempt via the attempt driver):
an error may come at DAG-parse time (constructor) or when the task runs (templated fields are only
known then). Credential cases use a connection without emulator, with Google's ADC lookup mocked to
find nothing and any request that would leave the machine blocked by a dead proxy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import google.auth
import pytest
from google.auth.exceptions import DefaultCredentialsError

from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.operators.cancel import BigQueryCancelJobOperator
from airflow_bqjobs.operators.rerun import BigQueryRerunJobOperator
from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator
from tests.reliability.attempt_driver import FAILED, TaskInstanceSpec, run_attempt
from tests.reliability.environment import CONN_ID, PROJECT, point_at_fake, set_connection
from tests.reliability.scenarios import DAG_ID, RUN_ID, query_config
from tests.reliability.task_context import TaskInstanceKey, XComStore

QUERY = query_config()
KEYLESS_CONN_ID = "bq_bad_credentials"


@dataclass(frozen=True)
class BadInput:
    name: str
    field: str  # InvalidJobInput.field must be this
    says: str  # and the message must contain this
    operator: type = BigQuerySubmitJobOperator
    kwargs: dict = field(default_factory=dict)
    # Extras of a connection without emulator (credential cases), given a temp dir for key files.
    connection: Callable[[Path], dict] | None = None

    def make_operator(self, tmp: Path) -> Callable[[], Any]:
        kwargs = {"task_id": "bad", "gcp_conn_id": CONN_ID, "project_id": PROJECT, "poll_interval": 0.05}
        if self.operator is BigQuerySubmitJobOperator:
            kwargs["configuration"] = QUERY
        if self.connection is not None:
            kwargs["gcp_conn_id"] = KEYLESS_CONN_ID
        kwargs.update(self.kwargs)
        return lambda: self.operator(**kwargs)


def submit(name, field, says, **kwargs):
    return BadInput(name, field, says, BigQuerySubmitJobOperator, kwargs)


def cancel(name, field, says, job_id):
    return BadInput(name, field, says, BigQueryCancelJobOperator, {"job_id": job_id})


def rerun(name, field, says, **kwargs):
    return BadInput(name, field, says, BigQueryRerunJobOperator, kwargs)


def credentials(name, field, says, extras: Callable[[Path], dict], **kwargs):
    return BadInput(name, field, says, BigQuerySubmitJobOperator, kwargs, connection=extras)


def write(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


LONG_ID = "j" * 1025
CASES = [
    # Job IDs: the submit operator's fixed ID and prefix.
    submit("job_id-bad-characters", "job_id", "only letters, digits", job_id="daily load!"),
    submit("job_id-too-long", "job_id", "at most 1024", job_id=LONG_ID),
    submit("job_id-empty", "job_id", "non-empty", job_id=""),
    submit("job_id_prefix-bad-characters", "job_id_prefix", "only letters, digits", job_id_prefix="my.prefix"),
    submit("job_id_prefix-too-long", "job_id_prefix", "at most 128", job_id_prefix="p" * 129),
    submit("job_id-and-job_id_prefix", "job_id", "job_id_prefix", job_id="fixed_id", job_id_prefix="pfx"),
    # Configurations.
    submit("configuration-no-job-type", "configuration", "exactly one job type", configuration={"labels": {}}),
    submit("configuration-two-job-types", "configuration", "exactly one job type",
           configuration={**QUERY, "copy": {"sourceTable": {}}}),
    submit("configuration-none", "configuration", "must be a dict", configuration=None),
    submit("configuration-text-not-json", "configuration", "not JSON", configuration="{'query': {"),
    submit("configuration-not-serialisable", "configuration", "JSON-serialisable",
           configuration={"query": {"query": "SELECT 1", "queryParameters": {1, 2}}}),
    submit("configuration-nan", "configuration", "JSON-serialisable",
           configuration={"query": {"query": "SELECT 1", "maximumBytesBilled": float("nan")}}),
    submit("configuration-job-type-not-a-dict", "configuration.query", "must be a dict",
           configuration={"query": "SELECT 1"}),
    submit("configuration-whole-job-resource", "configuration", "not a whole job resource",
           configuration={"configuration": QUERY}),
    submit("configuration-negative-jobTimeoutMs", "configuration.jobTimeoutMs", "positive whole number",
           configuration={**QUERY, "jobTimeoutMs": "-5"}),
    submit("configuration-invalid-labels", "configuration.labels", "start with a lowercase letter",
           configuration={**QUERY, "labels": {"1team": "data"}}),
    # Where and what.
    submit("location-unknown-form", "location", "not a BigQuery location", location="us central1"),
    submit("location-empty", "location", "not a BigQuery location", location=""),
    submit("project_id-invalid", "project_id", "not a valid Google Cloud project ID", project_id="My_Project"),
    # Labels.
    submit("labels-uppercase-key", "labels", "start with a lowercase letter", labels={"Team": "data"}),
    submit("labels-value-too-long", "labels", "at most 63", labels={"team": "d" * 64}),
    submit("labels-airflow-owned-key", "labels", "set by airflow-bqjobs itself", labels={"airflow-dag": "x"}),
    submit("labels-too-many", "labels", "at most 64", labels={f"k{i}": "v" for i in range(65)}),
    submit("labels-not-a-dict", "labels", "must be a dict", labels=["team"]),
    # Intervals.
    submit("poll_interval-zero", "poll_interval", "positive number of seconds", poll_interval=0),
    submit("poll_interval-negative", "poll_interval", "positive number of seconds", poll_interval=-1),
    submit("request_timeout-zero", "request_timeout", "positive number of seconds", request_timeout=0),
    submit("request_timeout-negative", "request_timeout", "positive number of seconds", request_timeout=-0.5),
    # Job references given to the cancel and rerun operators.
    cancel("cancel-job_id-bad-characters", "job_id", "only letters, digits", "daily load!"),
    cancel("cancel-job_id-too-long", "job_id", "at most 1024", LONG_ID),
    cancel("cancel-job_id-empty-project-part", "job_id", "project part before ':' is empty", ":US.job_1"),
    cancel("cancel-job_id-empty-location-part", "job_id", "location part before '.' is empty", ".job_1"),
    cancel("cancel-job_id-empty-job-part", "job_id", "job ID after '.' is empty", "US."),
    cancel("cancel-reference-empty-project", "job_id (project part)", "empty",
           {"projectId": "", "location": "US", "jobId": "job_1"}),
    cancel("cancel-reference-empty-location", "job_id (location part)", "empty",
           {"projectId": PROJECT, "location": "", "jobId": "job_1"}),
    cancel("cancel-job_id-empty-list", "job_id", "empty list", []),
    rerun("rerun-source_job-bad-characters", "source_job", "only letters, digits", source_job="daily load!"),
    rerun("rerun-source_job-two-jobs", "source_job", "names 2 jobs", source_job=["job_1", "job_2"]),
    rerun("rerun-job_id-too-long", "job_id", "at most 1024", source_job="job_1", job_id=LONG_ID),
    # Credentials.
    credentials("connection-missing-and-no-adc", "gcp_conn_id", "Application Default Credentials",
                lambda tmp: {}, gcp_conn_id="no_such_connection"),
    credentials("key_path-unreadable", "key_path", "cannot read the key file",
                lambda tmp: {"key_path": str(tmp / "missing-key.json")}),
    credentials("key_path-not-a-key", "key_path", "not a service-account key file",
                lambda tmp: {"key_path": write(tmp, "garbage.json", '{"hello": "world"}')}),
    credentials("keyfile_dict-invalid-json", "keyfile_dict", "not valid JSON",
                lambda tmp: {"keyfile_dict": '{"type": "service_account", "private_key": '}),
    credentials("keyfile_dict-not-a-key", "keyfile_dict", "not a usable service-account key",
                lambda tmp: {"keyfile_dict": json.dumps({"type": "service_account"})}),
]


def first_error(make_operator: Callable[[], Any]) -> BaseException | None:
    """The error of constructing the operator (DAG parse) or, failing that, of its first attempt."""
    try:
        make_operator()
    except Exception as exc:
        return exc
    attempt = run_attempt(TaskInstanceSpec(TaskInstanceKey(DAG_ID, "bad", RUN_ID), make_operator), 1, XComStore())
    return attempt.error if attempt.outcome == FAILED else None


def no_adc(*args, **kwargs):
    raise DefaultCredentialsError("Your default credentials were not found (fake ADC lookup)")


@pytest.fixture
def keyless_environment(monkeypatch):
    """No emulator, no ADC, and no way out of this machine: only a clear input error can end the try."""
    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    monkeypatch.setattr(google.auth, "default", no_adc)
    for proxy in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def test_the_table_is_large_and_every_case_is_distinct():
    assert len(CASES) >= 20
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_fails_naming_the_field_and_sends_nothing(case, fake_bq, monkeypatch, tmp_path, request):
    point_at_fake(monkeypatch, fake_bq.url)
    if case.connection is not None:
        request.getfixturevalue("keyless_environment")
        set_connection(monkeypatch, KEYLESS_CONN_ID, case.connection(tmp_path))

    error = first_error(case.make_operator(tmp_path))

    assert isinstance(error, InvalidJobInput), f"{case.name}: expected InvalidJobInput, got {error!r}"
    assert error.field == case.field, str(error)
    assert str(error).startswith(f"{case.field}: ") and case.says in str(error), str(error)
    assert fake_bq.calls == [], "a request reached the server"
