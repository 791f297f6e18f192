import pytest

from airflow_bqjobs.core.credential_options import (
    DEFAULT_SCOPES,
    parse_flag,
    parse_impersonation_chain,
    parse_scopes,
    project_of_service_account,
    split_chain,
)
from airflow_bqjobs.core.errors import InvalidJobInput

SA = "runner@proj-a.iam.gserviceaccount.com"
MID = "hop@proj-b.iam.gserviceaccount.com"


@pytest.mark.parametrize("value, chain", [
    (None, ()), ("", ()), ([], ()),
    (SA, (SA,)),
    ([MID, SA], (MID, SA)),
    (f"{MID}, {SA}", (MID, SA)),  # the Google provider's connection form: one comma-separated string
    ("123456-compute@developer.gserviceaccount.com", ("123456-compute@developer.gserviceaccount.com",)),
])
def test_impersonation_chain_forms(value, chain):
    assert parse_impersonation_chain(value) == chain


@pytest.mark.parametrize("value, field", [
    ("not-an-email", "impersonation_chain"),
    ([SA, "nope"], "impersonation_chain[1]"),
    (f"{SA},", "impersonation_chain[1]"),
    (42, "impersonation_chain"),
])
def test_bad_impersonation_chain_names_the_field(value, field):
    with pytest.raises(InvalidJobInput) as err:
        parse_impersonation_chain(value)
    assert err.value.field == field


def test_the_last_account_is_impersonated_through_the_others():
    assert split_chain((MID, SA)) == (SA, [MID])
    assert split_chain((SA,)) == (SA, [])


def test_project_of_a_service_account():
    assert project_of_service_account(SA) == "proj-a"
    assert project_of_service_account("123-compute@developer.gserviceaccount.com") is None


def test_scopes():
    assert parse_scopes(None) == DEFAULT_SCOPES
    ro = "https://www.googleapis.com/auth/bigquery.readonly"
    assert parse_scopes(f"{ro}, https://www.googleapis.com/auth/drive") == (ro, "https://www.googleapis.com/auth/drive")
    with pytest.raises(InvalidJobInput, match="scope"):
        parse_scopes("bigquery")


@pytest.mark.parametrize("value, expected", [(True, True), ("true", True), ("True", True), ("1", True),
                                             (False, False), ("false", False), (None, False), ("", False)])
def test_flags(value, expected):
    assert parse_flag(value, "is_anonymous") is expected


def test_bad_flag():
    with pytest.raises(InvalidJobInput, match="is_anonymous"):
        parse_flag("maybe", "is_anonymous")
