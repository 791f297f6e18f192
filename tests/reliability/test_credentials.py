"""The credentials the Google provider's users have, end to end against local auth servers
(tests/reliability/fake_google_auth.py) and the fake BigQuery: ``impersonation_chain`` (argument and
connection extra, one account or a delegation chain), ``scope``, ``credential_config_file``
(external account / Workload Identity Federation, path or content) and ``is_anonymous``. The proof
is in the traffic: which token each BigQuery request carried, what the token, IAM and STS
endpoints were asked. Deferrable runs rebuild the trigger from its serialised kwargs, as the
triggerer does, so they prove that the trigger builds the same credentials from the connection id.
"""

from __future__ import annotations

import json
import logging

import pytest
import requests

from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.hooks.jobs import BigQueryJobsHook
from tests.emulator import fast_retries
from tests.reliability.attempt_driver import FAILED, SUCCESS, run_attempt, run_task_instance
from tests.reliability.environment import set_connection
from tests.reliability.fake_google_auth import TokenEndpoint, make_service_account
from tests.reliability.scenarios import submit_task
from tests.reliability.task_context import XComStore

TARGET = "bq-runner@target-project.iam.gserviceaccount.com"
HOP = "hop@middle-project.iam.gserviceaccount.com"
READONLY = "https://www.googleapis.com/auth/bigquery.readonly"
AUDIENCE = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/airflow/providers/ci"


@pytest.fixture
def google(monkeypatch):
    """Google's token, IAM credentials and STS endpoints, all local."""
    from google.auth import _regional_access_boundary_utils as boundary
    from google.auth import iam

    endpoint = TokenEndpoint().start()
    monkeypatch.setattr(boundary, "get_service_account_rab_endpoint", endpoint.boundary_lookup_url)
    monkeypatch.setattr(boundary, "get_workload_identity_pool_rab_endpoint", endpoint.pool_boundary_lookup_url)
    monkeypatch.setattr(iam, "_IAM_ENDPOINT", endpoint.iam_endpoint)
    yield endpoint
    endpoint.stop()


@pytest.fixture
def account(google):
    account = make_service_account(google.url, project="source-project")
    google.accounts.append(account)
    return account


@pytest.fixture
def bigquery(fake_bq, monkeypatch, caplog):
    """The fake reached with real credentials (not the emulator's anonymous ones); records the
    Authorization header of every request sent to it."""
    from google.cloud.bigquery import _http

    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    monkeypatch.setattr(_http.Connection, "DEFAULT_API_ENDPOINT", fake_bq.url)
    fast_retries(monkeypatch, timeout=30.0)
    caplog.set_level(logging.DEBUG)
    seen: list[str | None] = []
    real_send = requests.Session.send

    def send(session, request, **kwargs):
        if request.url.startswith(fake_bq.url):
            seen.append(request.headers.get("Authorization"))
        return real_send(session, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", send)
    fake_bq.authorizations = seen
    return fake_bq


def external_account_config(google: TokenEndpoint, tmp_path, subject: str = "eyJ.external-identity.jwt") -> dict:
    """A Workload Identity Federation configuration: a file-sourced OIDC token exchanged at STS."""
    google.subject_tokens.append(subject)
    token_file = tmp_path / "oidc-token"
    token_file.write_text(subject)
    return {"type": "external_account", "audience": AUDIENCE,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": google.sts_url, "credential_source": {"file": str(token_file)}}


def run(conn_extras: dict, monkeypatch, *, deferrable: bool = False, **operator_kwargs):
    set_connection(monkeypatch, "bq_creds", {"project": "test-project", **conn_extras})
    result = run_task_instance(submit_task("creds", deferrable=deferrable, gcp_conn_id="bq_creds", **operator_kwargs))
    assert result.state == SUCCESS, [repr(a.error) for a in result.attempts]
    return result


def tokens(bigquery) -> set[str | None]:
    return set(bigquery.authorizations)


# -- impersonation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_impersonation_chain_argument_impersonates_the_last_account_through_the_delegates(
        bigquery, google, account, monkeypatch, deferrable):
    result = run({"keyfile_dict": account.keyfile_json}, monkeypatch, deferrable=deferrable,
                 impersonation_chain=[HOP, TARGET])

    impersonated = google.impersonated_tokens[TARGET]
    assert tokens(bigquery) == {f"Bearer {impersonated}"}  # every BigQuery request: the target's token
    assert {(i["target"], tuple(i["delegates"]), i["caller"]) for i in google.impersonations} == {
        (TARGET, (HOP,), account.token)}  # asked with the source key's token, through the delegate
    if deferrable:
        (kwargs,) = result.attempts[0].trigger_kwargs
        assert "impersonation_chain" in json.dumps(kwargs) and TARGET in json.dumps(kwargs)
        assert len(google.impersonations) >= 2  # the worker and the rebuilt trigger each got a token


def test_impersonation_chain_from_the_connection_extra_as_the_google_provider_stores_it(
        bigquery, google, account, monkeypatch):
    run({"keyfile_dict": account.keyfile_json, "impersonation_chain": f"{HOP}, {TARGET}"}, monkeypatch,
        deferrable=True)
    assert tokens(bigquery) == {f"Bearer {google.impersonated_tokens[TARGET]}"}
    assert {(i["target"], tuple(i["delegates"])) for i in google.impersonations} == {(TARGET, (HOP,))}


def test_the_argument_wins_over_the_extra(bigquery, google, account, monkeypatch):
    run({"keyfile_dict": account.keyfile_json, "impersonation_chain": HOP}, monkeypatch, impersonation_chain=TARGET)
    assert {i["target"] for i in google.impersonations} == {TARGET}


def test_without_impersonation_the_key_s_own_token_is_used(bigquery, google, account, monkeypatch):
    run({"keyfile_dict": account.keyfile_json}, monkeypatch)
    assert tokens(bigquery) == {f"Bearer {account.token}"} and google.impersonations == []


def test_the_project_defaults_to_the_impersonated_account_s(bigquery, google, account, monkeypatch):
    set_connection(monkeypatch, "bq_noproject", {"keyfile_dict": account.keyfile_json})
    hook = BigQueryJobsHook("bq_noproject", impersonation_chain=TARGET)
    assert hook.project_id == "target-project"  # as the Google provider bills it


def test_a_bad_chain_fails_at_parse_time_naming_the_field():
    with pytest.raises(InvalidJobInput) as err:
        submit_task("creds", deferrable=False, impersonation_chain=[TARGET, "not an account"]).make_operator()
    assert err.value.field == "impersonation_chain[1]"


# -- scope -----------------------------------------------------------------------------------------

def test_scope_extra_is_what_the_key_asks_for(bigquery, google, account, monkeypatch):
    run({"keyfile_dict": account.keyfile_json, "scope": f"{READONLY}, https://www.googleapis.com/auth/drive"},
        monkeypatch)
    assert set(google.scopes_requested) == {f"{READONLY} https://www.googleapis.com/auth/drive"}


def test_scope_extra_is_what_the_impersonated_token_is_asked_for(bigquery, google, account, monkeypatch):
    run({"keyfile_dict": account.keyfile_json, "scope": READONLY}, monkeypatch, impersonation_chain=TARGET)
    assert {tuple(i["scope"]) for i in google.impersonations} == {(READONLY,)}


# -- credential_config_file ------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["path", "content", "dict"])
def test_credential_config_file_exchanges_the_external_token_at_sts(bigquery, google, monkeypatch, tmp_path, form):
    config = external_account_config(google, tmp_path)
    path = tmp_path / "wif.json"
    path.write_text(json.dumps(config))
    value = {"path": str(path), "content": json.dumps(config), "dict": config}[form]
    run({"credential_config_file": value, "scope": READONLY}, monkeypatch, deferrable=form == "content")
    assert tokens(bigquery) <= {f"Bearer {t}" for t in google.sts_tokens} and tokens(bigquery)
    assert {(e["audience"], e["scope"]) for e in google.exchanges} == {(AUDIENCE, READONLY)}


def test_credential_config_file_then_impersonation(bigquery, google, monkeypatch, tmp_path):
    """Federation's usual set-up: the external identity impersonates a service account."""
    run({"credential_config_file": json.dumps(external_account_config(google, tmp_path))}, monkeypatch,
        impersonation_chain=TARGET)
    assert tokens(bigquery) == {f"Bearer {google.impersonated_tokens[TARGET]}"}
    assert {i["caller"] for i in google.impersonations} <= set(google.sts_tokens)


@pytest.mark.parametrize("value, fragment", [
    ("/nowhere/wif.json", "cannot read"),
    ('{"type": "external_account", "audience": ', "not valid JSON"),
    ('{"type": "something_else"}', "expected 'external_account'"),
    ('{"type": "external_account", "audience": "a"}', "not a usable credential configuration"),
])
def test_bad_credential_config_file_fails_clearly(bigquery, monkeypatch, value, fragment):
    set_connection(monkeypatch, "bq_bad_wif", {"project": "test-project", "credential_config_file": value})
    attempt = run_attempt(submit_task("creds", deferrable=False, gcp_conn_id="bq_bad_wif"), 1, XComStore())
    assert attempt.outcome == FAILED
    assert isinstance(attempt.error, InvalidJobInput) and attempt.error.field == "credential_config_file"
    assert fragment in str(attempt.error) and bigquery.calls == []


# -- is_anonymous ----------------------------------------------------------------------------------

@pytest.mark.parametrize("flag", [True, "true"])
def test_is_anonymous_sends_no_credentials_and_ignores_the_rest(bigquery, google, account, monkeypatch, flag):
    run({"is_anonymous": flag, "keyfile_dict": account.keyfile_json}, monkeypatch, deferrable=True)
    assert tokens(bigquery) == {None}
    assert google.verified_assertions == 0 and google.impersonations == []
