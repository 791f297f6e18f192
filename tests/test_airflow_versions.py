"""The provider on every supported Airflow (2.11, 3.0, 3.1, 3.2, 3.3; ``BQJOBS_AIRFLOW=X.Y bash
scripts/test.sh`` picks one): Airflow registers it, and the README's quick-start DAG file runs as is."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.compat import AIRFLOW_VERSION, dag_bag, register_dag, run_dag

REPO = Path(__file__).resolve().parent.parent
QUICK_START_DATE = datetime(2026, 2, 1, tzinfo=timezone.utc)


def test_this_airflow_is_the_one_the_lock_names():
    """BQJOBS_AIRFLOW picks the lock and venv: the suite really runs on that version."""
    wanted = os.environ.get("BQJOBS_AIRFLOW")
    if wanted is None:
        pytest.skip("BQJOBS_AIRFLOW not set: run through scripts/test.sh, which sets it")
    assert f"{AIRFLOW_VERSION.major}.{AIRFLOW_VERSION.minor}" == wanted


def test_airflow_providers_list_shows_the_provider(airflow_db):
    """`airflow providers list` (the CLI, a fresh process) finds us through the entry point."""
    env = {**os.environ, "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR"}
    out = subprocess.run([str(Path(sys.executable).parent / "airflow"), "providers", "list"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = [[cell.strip() for cell in ln.split("|")] for ln in out.stdout.splitlines() if "|" in ln]
    (ours,) = [row for row in rows if row[0] == "airflow-bqjobs"]
    assert ours[-1] == "0.1.0" and "deterministic job IDs" in ours[1]


def quick_start_code() -> str:
    """The Python block of the README's "Quick start" section, exactly as a user copies it."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return code


def test_the_readme_quick_start_dag_file_runs_unchanged(airflow_db, fake_bq, tmp_path, monkeypatch):
    """The quick start, saved as a DAG file beside the SQL file it names, parses and runs on this Airflow
    (its imports must exist on 2.11 as on 3.3), submitting one job that a rerun of the run reattaches to."""
    dags = tmp_path / "dags"
    (dags / "sql").mkdir(parents=True)
    (dags / "daily_sales.py").write_text(quick_start_code())
    shutil.copy(REPO / "example_dags" / "sql" / "daily_totals.sql", dags / "sql" / "daily_totals.sql")
    extra = {"project": "test-project", "emulator_host": fake_bq.url}
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps({"conn_type": "bigquery_jobs", "extra": extra}))
    fake_bq.add_rule(running_s=1.5)  # long enough for the deferrable task to really defer

    bag = dag_bag(dags)
    assert bag.import_errors == {}
    dag = register_dag(bag.dags["daily_sales"])
    run = run_dag(dag, QUICK_START_DATE)
    assert run.state == "success"
    (job,) = fake_bq.jobs
    assert job["labels"]["airflow-dag"] == "daily_sales" and job["error_result"] is None
    assert "SUM(amount)" in job["query"] and run.run_id in job["query"]  # the SQL file, rendered

    again = run_dag(dag, QUICK_START_DATE)
    assert again.state == "success" and len(fake_bq.calls_for("insert")) == 1
