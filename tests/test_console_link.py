"""The "BigQuery Console" extra link: the URL names project, location and job ID; every operator that
submits or follows one job stores it before waiting or deferring; Airflow serves it (provider
registration, the ``xcom_key`` a serialized DAG carries, the value left after a real ``dag.test()``)."""

from datetime import datetime, timezone
from urllib.parse import parse_qs, urlparse

import pytest

from airflow_bqjobs.core.console import job_console_url
from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.core.job_ref import JobRef
from airflow_bqjobs.links import CONSOLE_LINK_XCOM_KEY, BigQueryConsoleLink
from airflow_bqjobs.operators.cancel import BigQueryCancelJobOperator
from airflow_bqjobs.operators.rerun import BigQueryRerunJobOperator
from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator
from airflow_bqjobs.sensors.job import BigQueryJobSensor
from tests.airflow_context import make_context
from tests.compat import DAG, TaskDeferred, requires_airflow, run_dag, xcom_values

QUERY = {"query": {"query": "SELECT 1", "useLegacySql": False}}
LONG = {"pending_s": 0, "running_s": 60}


def url_parts(url: str) -> tuple[str, str, str, str]:
    """(project, job project, job ID, location) as the console reads them from the URL."""
    parsed = urlparse(url)
    assert (parsed.scheme, parsed.netloc, parsed.path) == ("https", "console.cloud.google.com", "/bigquery")
    query = parse_qs(parsed.query)
    ws = query["ws"][0]
    prefix = "!1m5!1m4!1m3!1s"
    assert ws.startswith(prefix)
    job_project, rest = ws[len(prefix):].split("!2s")
    job_id, location = rest.split("!3s")
    return query["project"][0], job_project, job_id, location


def test_url_names_project_location_and_job_id_as_the_google_provider_does():
    url = job_console_url(JobRef("airflow_d_t_r_0123abcd", "my-project", "europe-west1"))
    assert url == ("https://console.cloud.google.com/bigquery?project=my-project"
                   "&ws=!1m5!1m4!1m3!1smy-project!2sairflow_d_t_r_0123abcd!3seurope-west1")
    assert url_parts(url) == ("my-project", "my-project", "airflow_d_t_r_0123abcd", "europe-west1")


def test_url_encodes_a_domain_scoped_project():
    url = job_console_url(JobRef("j", "example.com:proj", "US"))
    assert "example.com%3Aproj" in url and url_parts(url)[0] == "example.com:proj"


def test_url_needs_project_and_location():
    with pytest.raises(InvalidJobInput, match="project and a location"):
        job_console_url(JobRef("j", "p"))


def test_provider_info_with_extra_links_is_valid_for_airflow():
    import json
    from importlib import resources

    import jsonschema

    from airflow_bqjobs.get_provider_info import get_provider_info

    schema = json.loads((resources.files("airflow") / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)
    assert get_provider_info()["extra-links"] == ["airflow_bqjobs.links.BigQueryConsoleLink"]


def test_link_is_registered_with_airflow():
    from airflow.providers_manager import ProvidersManager

    assert "airflow_bqjobs.links.BigQueryConsoleLink" in ProvidersManager().extra_links_class_names


@pytest.mark.parametrize("operator", [BigQuerySubmitJobOperator, BigQueryRerunJobOperator, BigQueryJobSensor,
                                      BigQueryCancelJobOperator])
def test_every_operator_following_a_job_declares_the_link(operator):
    links = [link for link in operator.operator_extra_links if isinstance(link, BigQueryConsoleLink)]
    assert [(link.name, link.xcom_key) for link in links] == [("BigQuery Console", CONSOLE_LINK_XCOM_KEY)]


@requires_airflow("3.0", "the serialized DAG names each extra link's xcom_key (2.11 serializes the link class, and its webserver calls get_link)")
def test_serialized_dag_carries_the_links_xcom_key():
    """What Airflow 3's API server gets: the link's name and xcom_key, no class to import."""
    from airflow.serialization import serialized_objects as so

    serialization = getattr(so, "OperatorSerialization", None) or so.SerializedBaseOperator  # 3.3 / older
    op = BigQuerySubmitJobOperator(task_id="t", configuration=QUERY)
    encoded = serialization.serialize_operator(op)
    assert encoded["_operator_extra_links"] == {"BigQuery Console": CONSOLE_LINK_XCOM_KEY}


# -- stored before waiting or deferring -------------------------------------------------------------

def deferred_context(op):
    context = make_context(op)
    with pytest.raises(TaskDeferred):
        op.execute(context)
    return context


def stored_link(context) -> tuple[str, str, str, str]:
    return url_parts(context["ti"].xcom[CONSOLE_LINK_XCOM_KEY])


@pytest.mark.usefixtures("emulator")
class TestStoredBeforeDeferring:
    def test_submit(self, fake_bq):
        fake_bq.add_rule(**LONG)
        op = BigQuerySubmitJobOperator(task_id="t", configuration=QUERY, project_id="test-project", location="EU",
                                       deferrable=True)
        context = deferred_context(op)
        (job,) = fake_bq.jobs
        assert stored_link(context) == ("test-project", "test-project", job["job_id"], "EU")

    def test_rerun(self, fake_bq, bq_client):
        bq_client.query("SELECT 1", job_id="source", location="asia-northeast1", job_retry=None).result()
        fake_bq.add_rule(**LONG)
        op = BigQueryRerunJobOperator(task_id="t", source_job="test-project:source", location="asia-northeast1",
                                      project_id="test-project", deferrable=True)
        context = deferred_context(op)
        new = next(j["job_id"] for j in fake_bq.jobs if j["job_id"] != "source")
        assert stored_link(context) == ("test-project", "test-project", new, "asia-northeast1")

    def test_sensor(self, fake_bq, bq_client):
        fake_bq.add_rule(job_id="^theirs$", **LONG)
        bq_client.query("SELECT 1", job_id="theirs", location="EU", job_retry=None)
        op = BigQueryJobSensor(task_id="t", job_id="test-project:EU.theirs", project_id="test-project", deferrable=True)
        assert stored_link(deferred_context(op)) == ("test-project", "test-project", "theirs", "EU")

    def test_cancel_of_one_job(self, fake_bq, bq_client):
        fake_bq.add_rule(job_id="^victim$", cancel_s=30, **LONG)
        bq_client.query("SELECT 1", job_id="victim", location="US", job_retry=None)
        op = BigQueryCancelJobOperator(task_id="t", job_id="victim", project_id="test-project", deferrable=True)
        assert stored_link(deferred_context(op)) == ("test-project", "test-project", "victim", "US")

    def test_cancel_of_several_jobs_links_none(self, fake_bq, bq_client):
        for job_id in ("a", "b"):
            bq_client.query("SELECT 1", job_id=job_id, location="US", job_retry=None).result()
        op = BigQueryCancelJobOperator(task_id="t", job_id=["a", "b"], project_id="test-project")
        context = make_context(op)
        op.execute(context)
        assert CONSOLE_LINK_XCOM_KEY not in context["ti"].xcom

    def test_sync_submit_of_an_already_succeeded_job(self, fake_bq):
        op = BigQuerySubmitJobOperator(task_id="t", configuration=QUERY, project_id="test-project")
        op.execute(make_context(op))
        context = make_context(op, try_number=2)  # a retry finds the job DONE: still linked
        op.execute(context)
        (job,) = fake_bq.jobs
        assert stored_link(context)[2] == job["job_id"]


# -- through real Airflow ----------------------------------------------------------------------------

LOGICAL_DATE = datetime(2026, 4, 1, tzinfo=timezone.utc)


def test_dag_test_run_leaves_the_link_airflow_serves(emulator, register_dag):
    """After a real dag.test() (the task runner re-stores get_link's answer when the try ends), the
    XCom under the link's xcom_key, which Airflow 3's API server returns as the link, is the URL."""
    emulator.add_rule(running_s=1.0)
    with DAG("console_link_dag", schedule=None, start_date=LOGICAL_DATE, catchup=False) as dag:
        BigQuerySubmitJobOperator(task_id="deferred", configuration=QUERY, project_id="test-project",
                                  deferrable=True, poll_interval=0.2)
    register_dag(dag)
    run = run_dag(dag, LOGICAL_DATE)
    (ti,) = run.get_task_instances()
    assert ti.state == "success"
    (job,) = emulator.jobs
    (url,) = xcom_values(run, "deferred", key=CONSOLE_LINK_XCOM_KEY)
    # The task runner stored get_link's answer (called in the worker) over ours: equal, so get_link works.
    assert url_parts(url) == ("test-project", "test-project", job["job_id"], "US")
