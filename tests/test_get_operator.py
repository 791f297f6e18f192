"""BigQueryGetJobOperator (``bq show -j``) over real HTTP to the fake: any ID form, summary or full
resource, never waits, a missing job fails clearly unless missing_ok."""

import pytest

from airflow_bqjobs._compat import AirflowException
from airflow_bqjobs.operators import BigQueryGetJobOperator
from tests.airflow_context import make_context

pytestmark = pytest.mark.usefixtures("emulator")


def show(job_id, **kw):
    return BigQueryGetJobOperator(task_id="show", job_id=job_id, project_id="test-project", **kw)


def start(fake_bq, bq_client, job_id="theirs", location="EU", **behaviour):
    fake_bq.add_rule(job_id=f"^{job_id}$", user_email="other-team@example.com", **behaviour)
    bq_client.query("SELECT 1", job_id=job_id, location=location, job_retry=None)


@pytest.mark.parametrize(
    "job_id",
    ["EU.theirs", "test-project:EU.theirs", {"projectId": "test-project", "location": "EU", "jobId": "theirs"}],
)
def test_reads_a_running_job_by_any_id_form_without_waiting(fake_bq, bq_client, job_id):
    start(fake_bq, bq_client, pending_s=0, running_s=60)
    op = show(job_id)
    context = make_context(op)
    summary = op.execute(context)
    assert (summary["job_id"], summary["location"], summary["state"]) == ("theirs", "EU", "RUNNING")
    assert summary["user_email"] == "other-team@example.com" and summary["job_type"] == "query"
    assert context["ti"].xcom["job_summary"] == summary
    assert [c["endpoint"] for c in fake_bq.calls if c["endpoint"] != "insert"] == ["get"]


def test_a_plain_job_id_uses_the_location_argument(fake_bq, bq_client):
    start(fake_bq, bq_client, pending_s=0, running_s=0)
    assert show("theirs", location="EU").execute(make_context(show("x")))["state"] == "DONE"


def test_full_resource_on_request(fake_bq, bq_client):
    start(fake_bq, bq_client, pending_s=0, running_s=0)
    op = show("EU.theirs", full_resource=True)
    resource = op.execute(make_context(op))
    assert resource["configuration"]["query"]["query"] == "SELECT 1"
    assert resource["jobReference"] == {"projectId": "test-project", "jobId": "theirs", "location": "EU"}


def test_a_failed_job_is_shown_not_raised(fake_bq, bq_client):
    start(fake_bq, bq_client, pending_s=0, running_s=0, error="invalidQuery")
    op = show("EU.theirs")
    assert op.execute(make_context(op))["error_result"]["reason"] == "invalidQuery"


def test_a_missing_job_fails_naming_it(fake_bq):
    op = show("EU.nope")
    with pytest.raises(AirflowException, match=r"No such job: test-project:EU\.nope .*missing_ok=True"):
        op.execute(make_context(op))


def test_missing_ok_returns_none(fake_bq):
    op = show("EU.nope", missing_ok=True)
    context = make_context(op)
    assert op.execute(context) is None and "job_summary" not in context["ti"].xcom


def test_it_is_exported_and_registered():
    import airflow_bqjobs.operators as operators
    from airflow_bqjobs.get_provider_info import get_provider_info

    assert "BigQueryGetJobOperator" in operators.__all__
    modules = get_provider_info()["operators"][0]["python-modules"]
    assert "airflow_bqjobs.operators.get" in modules
