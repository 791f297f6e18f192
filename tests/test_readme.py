"""README.md checked against the code: its examples run, its operator table names real arguments
with their real defaults, the job ID forms it lists parse, and what it says about labels, retries,
the provider's registration and the provider description is what the code does."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import airflow_bqjobs.operators as operators_module
import airflow_bqjobs.sensors.job as sensors_module
from airflow_bqjobs.core.job_ref import parse_job_ref

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
ROW = re.compile(r"^\| `(BigQuery\w+)\((.*?)\)` \|", re.M)


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, re.S)


def table_rows() -> list[tuple[str, str]]:
    return ROW.findall(README)


def documented_class(name: str) -> type:
    return getattr(operators_module, name, None) or getattr(sensors_module, name)


def parameters(cls: type) -> dict[str, inspect.Parameter]:
    """Every keyword the class accepts: its own ``__init__`` and those of the bases it forwards to."""
    found: dict[str, inspect.Parameter] = {}
    for klass in reversed(cls.__mro__):
        init = vars(klass).get("__init__")
        if init is not None:
            found.update(inspect.signature(init).parameters)
    return found


def arguments(text: str) -> list[tuple[str, str]]:
    """``a=…, b=, c=10`` -> [("a", "…"), ("b", ""), ("c", "10")] (a value may hold ``or``-prose)."""
    return re.findall(r"(\w+)=([^,]*)", text)


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_python_example_runs(index):
    namespace: dict = {}
    exec(compile(python_blocks()[index], f"README.md python block {index}", "exec"), namespace)
    dags = [v for v in namespace.values() if type(v).__name__ == "DAG"]
    assert dags and all(dag.tasks for dag in dags)


def test_the_table_documents_every_exported_operator_and_the_sensor():
    documented = {name for name, _ in table_rows()}
    assert documented == set(operators_module.__all__) | {"BigQueryJobSensor"}


@pytest.mark.parametrize("name, args", table_rows(), ids=[name for name, _ in table_rows()])
def test_table_arguments_exist_with_the_defaults_it_states(name, args):
    accepted = parameters(documented_class(name))
    for argument, value in arguments(args):
        assert argument in accepted, f"{name} has no argument {argument!r}"
        value = value.strip()
        if value and value != "…" and not value.startswith("…"):
            assert accepted[argument].default == ast.literal_eval(value), f"{name}({argument}=) default"


@pytest.mark.parametrize("name, args", table_rows(), ids=[name for name, _ in table_rows()])
def test_table_marks_every_required_argument(name, args):
    """``Name(arg=…)`` is what you must give: a required argument left out (or another put in its
    place, as ``BigQueryRerunJobOperator(job_id=…)`` once was) makes the documented call a TypeError."""
    required = {
        p.name for klass in documented_class(name).__mro__ if "__init__" in vars(klass)
        for p in inspect.signature(vars(klass)["__init__"]).parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.default is p.empty and klass.__module__.startswith("airflow_bqjobs")
    }
    marked = {argument for argument, value in arguments(args) if value.strip().startswith("…")}
    assert required <= marked, f"{name}: required {sorted(required - marked)} not marked with …"


def test_the_id_forms_it_lists_parse():
    sentence = re.search(r"accepts `job_id` as (.*?)\(an XComArg works", README, re.S).group(1)
    forms = [form for form in re.findall(r"`([\w:.]+)`", sentence) if form.endswith("job_id")]
    assert "project:LOCATION.job_id" in forms and "LOCATION.job_id" in forms
    for form in forms:
        text = form.replace("project", "my-project").replace("LOCATION", "EU").replace("job_id", "my_job")
        ref = parse_job_ref(text)
        assert ref.job_id == "my_job"
        assert ref.location == ("EU" if "LOCATION" in form else None)
        assert ref.project_id == ("my-project" if "project" in form else None)
        assert str(ref) == text  # the form the provider prints is the form it reads


def test_what_bq_prints_is_stated_as_bq_prints_it():
    assert "`project:job_id` (as `bq ls -j` and `bq show -j` print it; the location then comes from `location=`" in (
        " ".join(README.split()))
    assert "(as `bq` prints it" not in README


def test_the_labels_it_names_are_the_providers():
    from airflow_bqjobs.core.labels import AIRFLOW_LABEL_KEYS, airflow_labels

    named = re.search(r"Each job carries (.*?), sanitised", README, re.S).group(1)
    assert tuple(re.findall(r"`([\w-]+)`", named)) == AIRFLOW_LABEL_KEYS
    run = airflow_labels("d", "t", "manual__2025-01-01T00:00:00+00:00")["airflow-run"]
    assert run == "manual__2025-01-01t00_00_00_00_00"  # the README's "capitals, `:` and `+`" example


def test_the_transient_rule_it_describes():
    from airflow_bqjobs.core.transient import PERMANENT_REASONS, TRANSIENT_REASONS, TRANSIENT_STATUS

    assert {"rateLimitExceeded", "backendError"} <= TRANSIENT_REASONS and 429 in TRANSIENT_STATUS
    assert {500, 502, 503, 504} <= TRANSIENT_STATUS
    assert {"quotaExceeded", "accessDenied", "invalid"} <= PERMANENT_REASONS


def test_registration_it_describes():
    from importlib.metadata import entry_points

    from airflow_bqjobs.get_provider_info import get_provider_info
    from airflow_bqjobs.hooks.jobs import BigQueryJobsHook

    info = get_provider_info()
    assert "`airflow providers list` shows `airflow-bqjobs`" in README and info["package-name"] == "airflow-bqjobs"
    assert "the `bigquery_jobs` connection type" in README and BigQueryJobsHook.conn_type == "bigquery_jobs"
    (point,) = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("airflow_bqjobs")]
    assert point.load() is get_provider_info


def test_the_provider_description_says_a_clear_starts_a_new_job():
    from airflow_bqjobs.get_provider_info import get_provider_info

    description = get_provider_info()["description"]
    assert "retried task reattaches" in description
    assert "cleared task reattaches" not in description and "or cleared" not in description
    assert "clearing a task or DAG run starts a new job" in description and "reattach_on_clear=True" in description
    assert "a deliberate clear of *this* task instance is a request to run again and gets a new job" in " ".join(
        README.split()
    )


def test_the_defaults_it_states_in_prose():
    from airflow_bqjobs.core.job_listing import DEFAULT_MAX_RESULTS
    from airflow_bqjobs.core.progress import DEFAULT_INTERVAL

    assert "poll_interval=10" in README and parameters(operators_module.BigQuerySubmitJobOperator)[
        "poll_interval"].default == 10
    assert "max_results=50" in README and DEFAULT_MAX_RESULTS == 50
    assert "at most once a minute" in README and DEFAULT_INTERVAL == 60
