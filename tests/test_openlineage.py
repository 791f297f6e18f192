"""OpenLineage with the real provider (``apache-airflow-providers-openlineage``) and its file
transport, in ``dag.test()`` runs (tests/openlineage/lineage_dag.py, run in a fresh interpreter by
tests/openlineage/lineage_dag_run.py): START and COMPLETE events for query, load, copy and extract
jobs in sync and deferrable mode, a script, an upload and a job that fails, with the datasets named
as OpenLineage's spec (and the Google provider) names them; the same DAG run again, every job
already succeeded, gives the same lineage. Without the provider nothing of ours imports it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.openlineage.lineage_dag import CONN_ID, DAG_ID

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_dag(mode: str, fake_bq, tmp_path: Path) -> tuple[dict, list[dict]]:
    env = dict(os.environ)
    env.pop("BIGQUERY_EMULATOR_HOST", None)
    # A metadata DB of its own: the OpenLineage listener forks, and forked children that share the
    # session's SQLite file with this process can corrupt it for the tests that follow.
    home = tmp_path / "airflow-home"
    home.mkdir()
    with sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db") as source, \
            sqlite3.connect(home / "airflow.db") as copy:
        source.backup(copy)  # consistent, WAL included
    env["AIRFLOW_HOME"] = str(home)
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home / 'airflow.db'}"
    env[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(
        {"conn_type": "bigquery_jobs", "extra": {"project": "test-project", "emulator_host": fake_bq.url}})
    env["PYTHONPATH"] = str(REPO_ROOT)
    events_dir = tmp_path / "events"
    events_dir.mkdir()
    if mode == "lineage":
        env["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(
            {"type": "file", "log_file_path": str(events_dir / "ol"), "append": False})
        env["AIRFLOW__OPENLINEAGE__NAMESPACE"] = "bqjobs-tests"
    result_path = tmp_path / "result.json"
    done = subprocess.run([sys.executable, "-m", "tests.openlineage.lineage_dag_run", mode, str(result_path)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    result = json.loads(result_path.read_text())
    events = [json.loads(p.read_text()) for p in sorted(events_dir.rglob("*")) if p.is_file()]
    return result, events


def by_task(events: list[dict], run_index: int | None = None) -> dict[tuple[str, str], list[dict]]:
    """(task_id, eventType) -> events, task-level only."""
    out: dict[tuple[str, str], list[dict]] = {}
    for event in events:
        name = event["job"]["name"]
        if name.startswith(f"{DAG_ID}.") and name.count(".") == 1:
            out.setdefault((name.split(".", 1)[1], event["eventType"]), []).append(event)
    return out


def names(datasets: list[dict]) -> list[tuple[str, str]]:
    return sorted((d["namespace"], d["name"]) for d in datasets)


def bq(table: str) -> tuple[str, str]:
    return ("bigquery", f"test-project.{table}")


EXPECTED = {
    # task: (inputs, outputs) of its COMPLETE (or FAIL) event
    "query": ([bq("raw.fx"), bq("raw.sales")], [bq("mart.daily_totals")]),
    "rerun": ([bq("raw.fx"), bq("raw.sales")], [bq("mart.daily_totals")]),
    "load": ([("gs://landing", "events/2026-05-01")], [bq("raw.events")]),
    "copy": ([bq("mart.daily_totals")], [bq("backup.daily_totals")]),
    "extract": ([bq("mart.daily_totals")], [("gs://exports", "daily_totals")]),
}


@pytest.fixture(scope="module")
def lineage_runs(tmp_path_factory, airflow_db, fake_bq_server):
    fake_bq_server.reset()
    return run_dag("lineage", fake_bq_server, tmp_path_factory.mktemp("lineage"))


def test_every_task_ran_twice_and_the_second_run_found_every_job_done(lineage_runs, fake_bq_server):
    result, _ = lineage_runs
    first, second = result["runs"]
    expected = {t: "success" for t in first} | {"failing": "failed"}
    assert first == expected and second == expected


@pytest.mark.parametrize("mode", ["sync", "deferred"])
@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_start_and_complete_events_name_the_job_s_datasets(lineage_runs, kind, mode):
    _, events = lineage_runs
    tasks = by_task(events)
    task = f"{kind}_{mode}"
    assert tasks.get((task, "START")), sorted(tasks)
    completes = tasks[(task, "COMPLETE")]
    assert len(completes) == 2  # the first run, and the second that found the job already succeeded
    inputs, outputs = EXPECTED[kind]
    for complete in completes:
        assert (names(complete["inputs"]), names(complete["outputs"])) == (inputs, outputs)
    assert completes[0]["run"]["facets"]["externalQuery"]["externalQueryId"] == \
        completes[1]["run"]["facets"]["externalQuery"]["externalQueryId"]  # the same job both times


def test_query_facets_sql_job_id_bytes_and_cache(lineage_runs):
    _, events = lineage_runs
    complete = by_task(events)[("query_deferred", "COMPLETE")][0]
    facets = complete["run"]["facets"]
    assert facets["externalQuery"]["source"] == "bigquery"
    assert facets["externalQuery"]["externalQueryId"].startswith("airflow_bqjobs_lineage_query_deferred_")
    job = facets["bigQueryJob"]
    assert (job["cached"], job["billedBytes"], job["processedBytes"], job["jobType"], job["location"]) == (
        False, 10485760, 2097152, "QUERY", "US")
    assert "FROM raw.sales JOIN raw.fx" in complete["job"]["facets"]["sql"]["query"]


def test_a_script_is_accounted_for_by_its_child_jobs(lineage_runs):
    _, events = lineage_runs
    complete = by_task(events)[("script", "COMPLETE")][0]
    assert names(complete["inputs"]) == [bq("raw.fx"), bq("raw.sales")]
    assert names(complete["outputs"]) == [bq("mart.eu_totals"), bq("stage.eu_sales")]


def test_an_anonymous_result_table_is_no_output(lineage_runs):
    _, events = lineage_runs
    complete = by_task(events)[("anonymous_result", "COMPLETE")][0]
    assert (names(complete["inputs"]), complete["outputs"]) == ([bq("raw.sales")], [])


def test_an_uploaded_file_is_the_load_s_input(lineage_runs):
    _, events = lineage_runs
    complete = by_task(events)[("upload", "COMPLETE")][0]
    [(namespace, name)] = names(complete["inputs"])
    assert namespace == "file" and name.endswith("/events.json") and os.path.isabs(name)
    assert names(complete["outputs"]) == [bq("raw.uploaded")]


def test_a_failed_job_gives_a_fail_event_with_bigquery_s_error(lineage_runs):
    _, events = lineage_runs
    fail = by_task(events)[("failing", "FAIL")][0]
    # The provider writes errorMessage from the task's exception, which carries BigQuery's errorResult.
    assert "[invalidQuery] Unrecognized name: amout" in fail["run"]["facets"]["errorMessage"]["message"]
    assert names(fail["inputs"]) == [] and fail["run"]["facets"]["externalQuery"]["source"] == "bigquery"


def test_without_the_provider_nothing_changes_and_nothing_is_imported(tmp_path, airflow_db, fake_bq):
    result, events = run_dag("blocked", fake_bq, tmp_path)
    first, second = result["runs"]
    assert first == second == {t: "success" for t in first} | {"failing": "failed"}
    assert result["attempts"] == [] and result["loaded"] == [] and events == []


def test_a_dag_file_importing_our_operators_imports_no_openlineage():
    """With the provider installed and enabled: parse time pays nothing for lineage."""
    code = ("import sys; import airflow; before = set(sys.modules); "  # Airflow itself reads provider info
            "import airflow_bqjobs.operators, airflow_bqjobs.sensors, airflow_bqjobs.links, airflow_bqjobs.triggers.job;"
            " import example_dags.example_bqjobs_quickstart; "
            "print(sorted(m for m in set(sys.modules) - before if 'openlineage' in m))")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT),
           "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "console"})}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
