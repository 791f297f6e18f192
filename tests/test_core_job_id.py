import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.core.job_id import RunIdentity, derive_job_id, generation_job_id
from airflow_bqjobs.core.job_ref import validate_job_id

CONFIG = {"query": {"query": "SELECT 1", "useLegacySql": False}}
ID = RunIdentity("daily_sales", "load_orders", "scheduled__2026-11-21T00:00:00+00:00")


def test_readable_and_stable():
    job_id = derive_job_id(ID, CONFIG)
    assert job_id == derive_job_id(ID, dict(CONFIG))
    assert re.fullmatch(r"airflow_daily_sales_load_orders_scheduled__2026-11-21T00_00_00_00_00_[0-9a-f]{20}", job_id)


def test_every_input_changes_the_id():
    base = derive_job_id(ID, CONFIG)
    variants = [
        derive_job_id(RunIdentity("other", ID.task_id, ID.run_id), CONFIG),
        derive_job_id(RunIdentity(ID.dag_id, "other", ID.run_id), CONFIG),
        derive_job_id(RunIdentity(ID.dag_id, ID.task_id, "manual__x"), CONFIG),
        derive_job_id(RunIdentity(ID.dag_id, ID.task_id, ID.run_id, map_index=0), CONFIG),
        derive_job_id(RunIdentity(ID.dag_id, ID.task_id, ID.run_id, rerun_key="0.1"), CONFIG),
        derive_job_id(ID, {"query": {"query": "SELECT 2", "useLegacySql": False}}),
        derive_job_id(ID, CONFIG, prefix="team_a"),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_key_order_of_configuration_does_not_matter():
    a = {"query": {"query": "SELECT 1", "useLegacySql": False}, "labels": {"a": "1", "b": "2"}}
    b = {"labels": {"b": "2", "a": "1"}, "query": {"useLegacySql": False, "query": "SELECT 1"}}
    assert derive_job_id(ID, a) == derive_job_id(ID, b)


def test_inputs_that_sanitise_alike_do_not_collide():
    a = derive_job_id(RunIdentity("a.b", "t", "r"), CONFIG)
    b = derive_job_id(RunIdentity("a_b", "t", "r"), CONFIG)
    assert a.rsplit("_", 1)[0] == b.rsplit("_", 1)[0]  # same readable part
    assert a != b


def test_map_index_shown():
    assert "_m7_" in derive_job_id(RunIdentity("d", "t", "r", map_index=7), CONFIG)


def test_generations():
    base = derive_job_id(ID, CONFIG)
    assert generation_job_id(base, 0) == base
    assert generation_job_id(base, 2) == base + "_2"
    with pytest.raises(ValueError):
        generation_job_id(base, -1)


def test_bad_prefix_and_config():
    with pytest.raises(InvalidJobInput, match="job_id_prefix"):
        derive_job_id(ID, CONFIG, prefix="no spaces")
    with pytest.raises(InvalidJobInput, match="JSON-serialisable"):
        derive_job_id(ID, {"query": {"query": object()}})


text = st.text(min_size=1, max_size=600)


@settings(max_examples=300, deadline=None)
@given(dag=text, task=text, run=text, map_index=st.integers(-1, 10**6), prefix=st.none() | st.from_regex(r"[A-Za-z0-9_-]{1,128}", fullmatch=True))
def test_always_valid(dag, task, run, map_index, prefix):
    job_id = derive_job_id(RunIdentity(dag, task, run, map_index), CONFIG, prefix)
    assert validate_job_id(job_id) == job_id
    assert validate_job_id(generation_job_id(job_id, 99))


@settings(max_examples=300, deadline=None)
@given(a=st.tuples(text, text, text), b=st.tuples(text, text, text))
def test_distinct_inputs_distinct_ids(a, b):
    ida = derive_job_id(RunIdentity(*a), CONFIG)
    idb = derive_job_id(RunIdentity(*b), CONFIG)
    assert (ida == idb) == (a == b)
    # a generation suffix never lands on another input's base ID
    assert generation_job_id(ida, 1) != idb
