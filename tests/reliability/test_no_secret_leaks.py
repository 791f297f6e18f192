"""Secrets never leak: a connection holds a real (throwaway) service-account key; the hook builds
credentials from it, gets an access token from a local stand-in for Google's token endpoint, and
sends authorised requests to the fake. The private key, the token and the raw key file JSON must
appear in no log line (ours, Google's, Airflow's task logs), no XCom, no exception of any error path
we can trigger, no trigger kwargs, and nowhere in Airflow's metadata DB.

How requests reach the fake with real credentials: google-cloud-bigquery's default API endpoint is
pointed at the fake (the emulator setting would swap the credentials for anonymous ones).
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_bqjobs.core.errors import InvalidJobInput, JobFailed
from tests.compat import airflow_at_least, run_dag
from tests.emulator import fast_retries
from tests.reliability.attempt_driver import FAILED, SUCCESS, first_event_of, run_attempt, run_task_instance
from tests.reliability.audit import audit_task_run, base_job_id, jobs_of
from tests.reliability.environment import set_connection
from tests.reliability.fake_google_auth import ServiceAccount, TokenEndpoint, make_service_account
from tests.reliability.scenarios import submit_task
from tests.reliability.task_context import XComStore

DICT_CONN, PATH_CONN = "bq_secret_dict", "bq_secret_path"


# -- finding secrets -------------------------------------------------------------------------------

def leaks(account: ServiceAccount, surfaces: dict[str, str]) -> list[str]:
    """``"<secret> in <surface>"`` for every secret found; the secret itself is never printed."""
    return [f"{name} in {where}" for where, text in surfaces.items()
            for name, secret in account.secrets().items() if secret in text]


def without_dag_test_mask_echo(out: str) -> str:
    """Airflow 3.0's ``dag.test()`` prints the secrets it is told to mask; the lines that do are dropped.

    3.0.6's ``secrets_masker.mask_secret`` sends ``MaskSecret(value=<secret>)`` to the supervisor before
    it adds the mask, and ``dag.test()``'s ``InProcessSupervisorComms.send`` debug-logs every message
    ("Sending request", msg=...) unredacted. A real 3.0 task's socket comms log nothing and its
    supervisor omits MaskSecret bodies; 3.1 masks first, so the same line is redacted there.
    """
    if airflow_at_least("3.1") or not airflow_at_least("3.0"):
        return out
    return "\n".join(line for line in out.splitlines() if not ("Sending request" in line and "MaskSecret(" in line))


def error_text(error: BaseException) -> str:
    """What any handler could show of an error: str, repr and the traceback of the whole chain,
    suppressed contexts (``raise ... from None``) included."""
    parts, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        parts += [str(error), repr(error), "".join(traceback.format_exception(error))]
        error = error.__cause__ or error.__context__
    return "\n".join(parts)


def file_texts(root: Path) -> dict[str, str]:
    return {str(p): p.read_bytes().decode("utf-8", "replace") for p in root.rglob("*") if p.is_file()}


# -- set-up ----------------------------------------------------------------------------------------

@pytest.fixture
def token_endpoint(monkeypatch):
    """Google's auth servers, local: the token endpoint, and the access-boundary lookup google-auth
    makes in the background for service accounts."""
    from google.auth import _regional_access_boundary_utils as boundary

    endpoint = TokenEndpoint().start()
    monkeypatch.setattr(boundary, "get_service_account_rab_endpoint", endpoint.boundary_lookup_url)
    yield endpoint
    endpoint.stop()


@pytest.fixture
def account(token_endpoint):
    account = make_service_account(token_endpoint.url)
    token_endpoint.accounts.append(account)
    return account


@pytest.fixture
def keyed_fake(fake_bq, account, monkeypatch, tmp_path, caplog):
    """The fake, reached with the account's credentials through both kinds of key connection."""
    from google.cloud.bigquery import _http

    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    monkeypatch.setattr(_http.Connection, "DEFAULT_API_ENDPOINT", fake_bq.url)
    fast_retries(monkeypatch, timeout=60.0)
    key_file = tmp_path / "key.json"
    key_file.write_text(account.keyfile_json)
    set_connection(monkeypatch, DICT_CONN, {"keyfile_dict": account.keyfile_json, "project": "test-project"})
    set_connection(monkeypatch, PATH_CONN, {"key_path": str(key_file)})
    caplog.set_level(logging.DEBUG)
    return fake_bq


def secret_task(conn_id: str, deferrable: bool, task_id: str = "load", **kwargs):
    return submit_task(task_id, deferrable=deferrable, gcp_conn_id=conn_id, **kwargs)


# -- the tests -------------------------------------------------------------------------------------

@pytest.mark.parametrize("conn_id", [DICT_CONN, PATH_CONN])
@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_task_runs_with_a_key_leak_nothing(keyed_fake, account, token_endpoint, caplog, capfd, conn_id, deferrable):
    """A job that fails once (JobFailed), transient 503s while waiting (logged), then success."""
    spec = secret_task(conn_id, deferrable)
    base = base_job_id(spec)
    keyed_fake.add_rule(job_id=f"^{base}$", error={"reason": "jobBackendError", "message": "backend hiccup"})
    keyed_fake.inject("503", "get", count=3)

    run = run_task_instance(spec)

    assert [a.outcome for a in run.attempts] == [FAILED, SUCCESS]
    assert isinstance(run.attempts[0].error, JobFailed)
    assert audit_task_run(run, jobs_of(keyed_fake.jobs, base), failed_generations=1).ok
    assert token_endpoint.verified_assertions >= 1  # the key really signed, the token was really used
    assert keyed_fake.fault_counts.get("503") == 3
    assert "Starting new HTTPS connection" not in caplog.text  # nothing tried to reach the real Google
    out, err = capfd.readouterr()
    surfaces = {"caplog": caplog.text, "stdout": out, "stderr": err, "xcom": json.dumps(run.xcom),
                "returned": json.dumps(run.result), "failed try's error": error_text(run.attempts[0].error),
                "trigger kwargs": json.dumps([a.trigger_kwargs for a in run.attempts])}
    assert not leaks(account, surfaces), leaks(account, surfaces)
    if deferrable:
        assert all(a.trigger_kwargs for a in run.attempts)


def corrupt_key(account: ServiceAccount) -> dict:
    """The real key with one character of its body changed: still full of key material, unusable."""
    lines = account.private_key_pem.splitlines()
    lines[5] = ("A" if lines[5][0] != "A" else "B") + lines[5][1:]
    return {**account.keyfile, "private_key": "\n".join(lines[:-3])}  # and cut short


BAD_KEYS = {
    # name: (connection extras given the account and a temp dir, field named by the error)
    "keyfile_dict-corrupt-key": (lambda a, tmp: {"keyfile_dict": json.dumps(corrupt_key(a))}, "keyfile_dict"),
    "keyfile_dict-truncated-json": (lambda a, tmp: {"keyfile_dict": a.keyfile_json[:-40]}, "keyfile_dict"),
    "keyfile_dict-missing-email": (
        lambda a, tmp: {"keyfile_dict": json.dumps({k: v for k, v in a.keyfile.items() if k != "client_email"})},
        "keyfile_dict"),
    "key_path-corrupt-key": (lambda a, tmp: {"key_path": write(tmp / "k.json", json.dumps(corrupt_key(a)))},
                             "key_path"),
    "key_path-truncated-json": (lambda a, tmp: {"key_path": write(tmp / "k.json", a.keyfile_json[:-40])}, "key_path"),
    "key_path-unreadable": (lambda a, tmp: {"key_path": str(tmp / "gone" / "key.json")}, "key_path"),
}


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("case", sorted(BAD_KEYS))
def test_bad_keys_fail_clearly_without_showing_the_key(keyed_fake, account, monkeypatch, tmp_path, caplog, capfd,
                                                        case):
    extras, field = BAD_KEYS[case]
    set_connection(monkeypatch, "bq_bad_key", {**extras(account, tmp_path), "project": "test-project"})

    attempt = run_attempt(secret_task("bq_bad_key", deferrable=False), 1, XComStore())

    assert isinstance(attempt.error, InvalidJobInput) and attempt.error.field == field, repr(attempt.error)
    assert keyed_fake.calls == []
    out, err = capfd.readouterr()
    surfaces = {"error": error_text(attempt.error), "caplog": caplog.text, "stdout": out, "stderr": err}
    assert not leaks(account, surfaces), leaks(account, surfaces)


def test_refused_token_and_unreadable_job_errors_leak_nothing(keyed_fake, account, token_endpoint, caplog, capfd):
    """Two more error paths: the token endpoint refuses the key; the trigger cannot find the job."""
    from airflow_bqjobs.triggers.job import BigQueryJobTrigger

    token_endpoint.refuse = True
    refused = run_attempt(secret_task(DICT_CONN, deferrable=False), 1, XComStore())
    assert refused.outcome == FAILED and "invalid_grant" in str(refused.error), repr(refused.error)
    token_endpoint.refuse = False

    trigger = BigQueryJobTrigger({"projectId": "test-project", "location": "US", "jobId": "no_such_job"},
                                 gcp_conn_id=DICT_CONN, poll_interval=0.05)
    _, kwargs = trigger.serialize()
    event = first_event_of(trigger, timeout=30)
    assert event["status"] == "error" and "no_such_job" in event["message"]

    out, err = capfd.readouterr()
    surfaces = {"token refused error": error_text(refused.error), "trigger event": json.dumps(event),
                "trigger kwargs": json.dumps(kwargs), "caplog": caplog.text, "stdout": out, "stderr": err}
    assert not leaks(account, surfaces), leaks(account, surfaces)


LOGICAL_DATE = datetime(2026, 3, 2, tzinfo=timezone.utc)


def test_a_real_dag_run_leaks_nothing_to_task_logs_xcom_or_the_metadata_db(
        keyed_fake, account, token_endpoint, register_dag, caplog, capfd):
    """dag.test(): a sync and a deferrable task succeed after a failed first job, a third task fails
    for good; Airflow's task logs, its XCom table and its whole metadata DB are searched."""
    from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator
    from tests.compat import DAG

    common = {"gcp_conn_id": DICT_CONN, "project_id": "test-project", "poll_interval": 0.05,
              "retry_delay": timedelta(0)}
    with DAG("reliability_secret_leaks", schedule=None, start_date=LOGICAL_DATE, catchup=False) as dag:
        for task_id, deferrable, retries in (("sync", False, 1), ("deferrable", True, 1), ("doomed", False, 0)):
            BigQuerySubmitJobOperator(task_id=task_id, deferrable=deferrable, retries=retries,
                                      configuration={"query": {"query": f"SELECT '{task_id}'", "useLegacySql": False}},
                                      **common)
    register_dag(dag)
    keyed_fake.add_rule(job_id="_(sync|deferrable|doomed)_", times=3,
                        error={"reason": "invalidQuery", "message": "Syntax error at [1:1]"})

    dag_run = run_dag(dag, LOGICAL_DATE)

    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert states == {"sync": "success", "deferrable": "success", "doomed": "failed"}
    assert token_endpoint.verified_assertions >= 1
    out, err = capfd.readouterr()
    out = without_dag_test_mask_echo(out)
    airflow_home = Path(os.environ["AIRFLOW_HOME"])
    surfaces = {"caplog": caplog.text, "stdout": out, "stderr": err, **file_texts(airflow_home)}
    assert "Syntax error at [1:1]" in out + err + caplog.text  # the failure was logged: we looked at the logs
    assert not leaks(account, surfaces), leaks(account, surfaces)


def test_the_search_finds_the_key_however_it_was_escaped(account):
    """Control: the search is not blind to the forms a key takes when dumped."""
    for form in (account.private_key_pem, repr(account.keyfile), json.dumps(account.keyfile_json),
                 json.dumps({"extra": json.dumps({"keyfile_dict": account.keyfile_json})})):
        assert any(found.startswith("private key line") for found in leaks(account, {"dump": form}))
    assert leaks(account, {"log": f"Bearer {account.token}"}) == ["access token in log"]


# -- impersonation and external accounts -------------------------------------------------------------

IMPERSONATED = "bq-runner@target-project.iam.gserviceaccount.com"
SUBJECT_TOKEN = "eyJhbGciOiJSUzI1NiJ9.external-identity-" + "x" * 40


@pytest.fixture
def iam_and_sts(token_endpoint, monkeypatch):
    """The local token endpoint also answers IAM credentials' generateAccessToken and STS."""
    from google.auth import _regional_access_boundary_utils as boundary
    from google.auth import iam

    monkeypatch.setattr(iam, "_IAM_ENDPOINT", token_endpoint.iam_endpoint)
    monkeypatch.setattr(boundary, "get_workload_identity_pool_rab_endpoint", token_endpoint.pool_boundary_lookup_url)
    token_endpoint.subject_tokens.append(SUBJECT_TOKEN)
    return token_endpoint


def issued_secrets(account: ServiceAccount, endpoint: TokenEndpoint) -> dict[str, str]:
    found = dict(account.secrets())
    found.update({f"impersonated token for {who}": token for who, token in endpoint.impersonated_tokens.items()})
    found.update({f"STS token {i}": token for i, token in enumerate(endpoint.sts_tokens)})
    found["external subject token"] = SUBJECT_TOKEN
    return found


def wif_extras(endpoint: TokenEndpoint, tmp_path: Path) -> dict:
    token_file = tmp_path / "oidc-token"
    token_file.write_text(SUBJECT_TOKEN)
    config = {"type": "external_account", "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
              "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x",
              "token_url": endpoint.sts_url, "credential_source": {"file": str(token_file)}}
    return {"credential_config_file": json.dumps(config), "project": "test-project"}


@pytest.mark.parametrize("source", ["keyfile_dict", "credential_config_file"])
@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_impersonated_and_federated_runs_leak_no_token(keyed_fake, account, iam_and_sts, monkeypatch, tmp_path,
                                                       caplog, capfd, source, deferrable):
    """The source key or external token, the STS token and the impersonated token appear nowhere;
    the trigger kwargs hold the account emails only."""
    extras = wif_extras(iam_and_sts, tmp_path) if source == "credential_config_file" else {
        "keyfile_dict": account.keyfile_json, "project": "test-project"}
    set_connection(monkeypatch, "bq_impersonating", {**extras, "impersonation_chain": IMPERSONATED})
    keyed_fake.inject("503", "get", count=2)

    run = run_task_instance(secret_task("bq_impersonating", deferrable))

    assert run.state == SUCCESS, [repr(a.error) for a in run.attempts]
    assert iam_and_sts.impersonated_tokens and (source == "keyfile_dict" or iam_and_sts.sts_tokens)
    out, err = capfd.readouterr()
    surfaces = {"caplog": caplog.text, "stdout": out, "stderr": err, "xcom": json.dumps(run.xcom),
                "returned": json.dumps(run.result),
                "trigger kwargs": json.dumps([a.trigger_kwargs for a in run.attempts])}
    found = issued_secrets(account, iam_and_sts)
    leaked = [f"{name} in {where}" for where, text in surfaces.items() for name, s in found.items() if s in text]
    assert not leaked, leaked
    if deferrable:
        assert all(a.trigger_kwargs for a in run.attempts)


def test_a_refused_impersonation_fails_without_showing_a_token(keyed_fake, account, iam_and_sts, monkeypatch,
                                                                caplog, capfd):
    """IAM credentials refuses (the caller's token is not one it issued): the error says so, no token shown."""
    set_connection(monkeypatch, "bq_refused", {"keyfile_dict": account.keyfile_json, "project": "test-project",
                                               "impersonation_chain": IMPERSONATED})
    iam_and_sts.accounts.remove(account)  # the token endpoint no longer knows the key either
    attempt = run_attempt(secret_task("bq_refused", deferrable=False), 1, XComStore())
    assert attempt.outcome == FAILED
    out, err = capfd.readouterr()
    surfaces = {"error": error_text(attempt.error), "caplog": caplog.text, "stdout": out, "stderr": err}
    assert not leaks(account, surfaces), leaks(account, surfaces)
