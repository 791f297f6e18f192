import pytest

from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.core.job_ref import JobRef, parse_job_ref, validate_job_id


@pytest.mark.parametrize(
    "text, expected",
    [
        ("bquijob_123", JobRef("bquijob_123")),
        ("US.bquijob_123", JobRef("bquijob_123", None, "US")),
        ("my-project-1234:US.bquijob_123", JobRef("bquijob_123", "my-project-1234", "US")),
        ("example.com:my-proj:asia-northeast1.j-1", JobRef("j-1", "example.com:my-proj", "asia-northeast1")),
        ("  EU.x  ", JobRef("x", None, "EU")),
        # what `bq ls -j` / `bq show -j` print: project and job ID, no location
        ("my-project-1234:bquxjob_1a2b3c4d_18f0", JobRef("bquxjob_1a2b3c4d_18f0", "my-project-1234")),
        ("example.com:my-proj:j-1", JobRef("j-1", "example.com:my-proj")),
        # the Google provider's job_id_path XCom: project:location:job_id
        ("my-project-1234:us-east1:airflow_1a2b", JobRef("airflow_1a2b", "my-project-1234", "us-east1")),
        ("my-project-1234:US:airflow_1a2b", JobRef("airflow_1a2b", "my-project-1234", "US")),
        ("example.com:my-proj:EU:j-1", JobRef("j-1", "example.com:my-proj", "EU")),
    ],
)
def test_accepted_forms(text, expected):
    assert parse_job_ref(text) == expected


def test_full_form_location_wins_over_explicit_location_like_bq():
    ref = parse_job_ref("p:US.job", project_id="other", location="EU")
    assert (ref.project_id, ref.location) == ("p", "US")
    assert parse_job_ref("job", project_id="other", location="EU") == JobRef("job", "other", "EU")
    assert parse_job_ref("US.job", location="EU").location == "US"


def test_dict_and_round_trip():
    ref = parse_job_ref({"projectId": "p", "location": "EU", "jobId": "j"})
    assert ref == JobRef("j", "p", "EU")
    assert parse_job_ref(ref.to_api()) == ref
    assert parse_job_ref(ref.full_id) == ref
    assert ref.full_id == "p:EU.j"
    assert parse_job_ref({"job_id": "j"}) == JobRef("j")


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("", "non-empty"),
        ("a" * 1025, "1025 characters"),
        ("bad id", "' '"),
        ("job/1", "'/'"),
        (":US.job", "project part before ':' is empty"),
        ("p:.job", "location part before '.' is empty"),
        ("US.", "job ID after '.' is empty"),
        ("p:", "job ID after ':' is empty"),
        ("Bad_Project:job", "project part"),
        ("p:US:EU.job", "two locations"),
        ("a.b.c", "more than one '.'"),
        ("p:U$.job", "location part"),
        ("Bad_Project:US.job", "project part"),
        (42, "got int"),
        ({"projectId": "p"}, "needs 'jobId'"),
    ],
)
def test_rejected_with_clear_message(value, fragment):
    with pytest.raises(InvalidJobInput) as err:
        parse_job_ref(value, field="job")
    assert fragment in str(err.value)
    assert str(err.value).startswith("job")


def test_max_length_accepted():
    assert validate_job_id("a" * 1024) == "a" * 1024


def test_explicit_location_validated():
    with pytest.raises(InvalidJobInput, match="location"):
        parse_job_ref("j", location="not a location")


def test_bq_form_takes_the_location_from_location_or_else_leaves_it_to_the_connection():
    assert parse_job_ref("p:job", location="EU") == JobRef("job", "p", "EU")
    assert parse_job_ref("p:job", project_id="other") == JobRef("job", "p", None)
    assert parse_job_ref("p:job").with_defaults("conn-project", "asia-northeast1") == JobRef("job", "p", "asia-northeast1")
