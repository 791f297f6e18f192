"""BigQueryJobsHook: connections compatible with google_cloud_default, and the jobs API over real HTTP."""

import json
import time

import pytest
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.oauth2 import service_account

from airflow_bqjobs.core.errors import InvalidJobInput, JobAlreadyExists
from airflow_bqjobs.core.job_ref import JobRef
from airflow_bqjobs.core.transient import is_transient
from airflow_bqjobs.hooks.credentials import client_settings, normalize_extras
from airflow_bqjobs.hooks.jobs import BigQueryJobsHook

QUERY = {"query": {"query": "SELECT 1", "useLegacySql": False}}


@pytest.fixture
def service_account_info():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return {
        "type": "service_account",
        "project_id": "key-project",
        "private_key_id": "abc",
        "private_key": pem.decode(),
        "client_email": "sa@key-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "http://127.0.0.1:1/token",
    }


def fast_hook(url, monkeypatch, **kw):
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", url)
    hook = BigQueryJobsHook("no_such_conn", project_id="test-project", **kw)
    hook.__dict__["retry"] = Retry(predicate=is_transient, initial=0.01, maximum=0.05, timeout=10)
    return hook


class TestConnectionExtras:
    def test_prefixed_and_plain_extras(self):
        extras = normalize_extras(
            {"extra__google_cloud_platform__project": "p1", "extra__google_cloud_platform__key_path": "", "location": "EU"}
        )
        assert extras == {"project": "p1", "location": "EU"}
        assert normalize_extras({"project": "plain", "extra__google_cloud_platform__project": "old"})["project"] == "plain"
        assert normalize_extras({"extra__google_cloud_platform__project": "old", "project": "plain"})["project"] == "plain"

    def test_key_path(self, tmp_path, service_account_info, monkeypatch):
        monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
        path = tmp_path / "key.json"
        path.write_text(json.dumps(service_account_info))
        settings = client_settings({"key_path": str(path)})
        assert isinstance(settings.credentials, service_account.Credentials)
        assert settings.project_id == "key-project" and settings.api_endpoint is None
        assert client_settings({"key_path": str(path), "project": "other"}).project_id == "other"

    def test_keyfile_dict_as_text_or_dict(self, service_account_info, monkeypatch):
        monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
        for value in (service_account_info, json.dumps(service_account_info)):
            settings = client_settings(normalize_extras({"extra__google_cloud_platform__keyfile_dict": value}))
            assert settings.credentials.service_account_email == "sa@key-project.iam.gserviceaccount.com"

    def test_bad_key_material_never_echoed(self, tmp_path, service_account_info, monkeypatch):
        monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
        with pytest.raises(InvalidJobInput, match="key_path.*cannot read") as err:
            client_settings({"key_path": str(tmp_path / "missing.json")})
        bad = json.dumps(service_account_info)[:-5]
        with pytest.raises(InvalidJobInput, match="keyfile_dict: is not valid JSON") as err:
            client_settings({"keyfile_dict": bad})
        assert "PRIVATE KEY" not in str(err.value)
        broken = {**service_account_info, "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}
        with pytest.raises(InvalidJobInput, match="keyfile_dict") as err:
            client_settings({"keyfile_dict": broken})
        assert "AAAA" not in str(err.value)

    def test_adc_when_no_connection(self, monkeypatch, mocker):
        monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
        creds = AnonymousCredentials()
        default = mocker.patch("google.auth.default", return_value=(creds, "adc-project"))
        hook = BigQueryJobsHook("conn_that_does_not_exist")
        assert hook.extras == {}
        assert hook.client.project == "adc-project"
        assert default.call_args.kwargs["scopes"][0].endswith("/auth/bigquery")

    def test_emulator_from_extra_and_env(self, monkeypatch, fake_bq):
        monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
        host = fake_bq.url.removeprefix("http://")
        settings = client_settings({"emulator_host": host, "project": "p"})
        assert isinstance(settings.credentials, AnonymousCredentials) and settings.api_endpoint == fake_bq.url
        monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", fake_bq.url)
        assert client_settings({}).api_endpoint == fake_bq.url

    def test_connection_from_airflow(self, monkeypatch, fake_bq):
        monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
        extra = {"extra__google_cloud_platform__project": "conn-project", "emulator_host": fake_bq.url, "location": "EU"}
        monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps({"conn_type": "google_cloud_platform", "extra": extra}))
        hook = BigQueryJobsHook()
        assert (hook.project_id, hook.location) == ("conn-project", "EU")
        job = hook.insert_job(JobRef("from_conn"), QUERY)
        assert job["jobReference"] == {"projectId": "conn-project", "location": "EU", "jobId": "from_conn"}

    def test_no_project_is_a_clear_error(self, monkeypatch, fake_bq):
        monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", fake_bq.url)
        monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
        with pytest.raises(InvalidJobInput, match="project_id: no project"):
            BigQueryJobsHook("none").client


class TestJobsApi:
    def test_insert_get_cancel_delete(self, fake_bq, monkeypatch):
        fake_bq.add_rule(job_id="^long$", running_s=60)
        hook = fast_hook(fake_bq.url, monkeypatch)
        ref = JobRef("long", location="US")
        inserted = hook.insert_job(ref, QUERY)
        assert inserted["jobReference"]["jobId"] == "long"
        assert hook.get_job(ref)["status"]["state"] in ("PENDING", "RUNNING")
        assert hook.get_job(JobRef("missing")) is None
        with pytest.raises(JobAlreadyExists, match="Already Exists"):
            hook.insert_job(ref, QUERY)
        assert hook.cancel_job(ref)["jobReference"]["jobId"] == "long"
        deadline = time.time() + 5
        while hook.get_job(ref)["status"]["state"] != "DONE" and time.time() < deadline:
            time.sleep(0.05)
        assert hook.get_job(ref)["status"]["errorResult"]["reason"] == "stopped"
        hook.delete_job_metadata(ref)
        assert hook.get_job(ref) is None

    def test_list_pages_and_limits(self, fake_bq, monkeypatch):
        hook = fast_hook(fake_bq.url, monkeypatch)
        for i in range(7):
            hook.insert_job(JobRef(f"job_{i}"), QUERY)
        ids = [j["jobReference"]["jobId"] for j in hook.list_jobs(page_size=3)]
        assert ids == [f"job_{i}" for i in reversed(range(7))]
        assert len(list(hook.list_jobs(max_results=4, page_size=3))) == 4
        assert len(fake_bq.calls_for("list")) == 3 + 2

    def test_transient_errors_are_retried(self, fake_bq, monkeypatch):
        hook = fast_hook(fake_bq.url, monkeypatch)
        hook.insert_job(JobRef("j"), QUERY)
        for kind in ("429", "403", "500", "503", "reset_before"):
            fake_bq.inject(kind, "get", count=2)
            assert hook.get_job(JobRef("j"))["jobReference"]["jobId"] == "j"
        assert fake_bq.fault_counts["get:503"] == 2

    def test_insert_whose_answer_was_lost_is_retried_under_the_same_id(self, fake_bq, monkeypatch):
        hook = fast_hook(fake_bq.url, monkeypatch)
        fake_bq.inject("reset_after", "insert", count=1)
        with pytest.raises(JobAlreadyExists):
            hook.insert_job(JobRef("lost_answer"), QUERY)  # the retry meets the job the first try created
        assert fake_bq.count_jobs("lost_answer") == 1

    def test_non_transient_errors_are_not_retried(self, fake_bq, monkeypatch):
        from google.api_core.exceptions import BadRequest

        hook = fast_hook(fake_bq.url, monkeypatch)
        with pytest.raises(BadRequest):
            hook.insert_job(JobRef("bad"), {"query": {}, "copy": {}})
        assert len(fake_bq.calls_for("insert")) == 1
