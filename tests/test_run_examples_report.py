"""scripts/run_examples.py's report, run for real (dag.test, twice) against the HTTP fake: one row per
task with its job and whether it was inserted or reused (read from BigQuery), and the second run's
"0 new jobs"."""

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from tests.pacing import check_often

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "run_examples.py"


@pytest.fixture
def run_examples(airflow_db, fake_bq, monkeypatch):
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", fake_bq.url)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test-project")
    extra = {"project": "test-project", "emulator_host": fake_bq.url}
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps({"conn_type": "bigquery_jobs", "extra": extra}))
    spec = importlib.util.spec_from_file_location("run_examples", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "run_examples", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    real_load_dags = module.load_dags

    def load_dags(folder, only):  # the DAG files as they are, checking the fake's jobs often (tests/pacing.py)
        dags, import_errors = real_load_dags(folder, only)
        return [check_often(dag) for dag in dags], import_errors

    module.load_dags = load_dags
    return module


def test_quickstart_report_shows_each_tasks_job_inserted_then_reused(run_examples, fake_bq, capsys):
    fake_bq.add_rule(total_bytes_processed=2048)
    run_examples.REPORT = sys.stdout
    assert run_examples.main(["--dag-id", "example_bqjobs_quickstart", "--expect-no-new-jobs"]) == 0
    out = capsys.readouterr().out
    first, second = out.split("Second run (same DAG runs again)", 1)
    rows = [line for line in first.splitlines() if line.startswith("  build_daily_totals ")]
    assert len(rows) == 1 and re.search(r"inserted\s+DONE\s+2\.0 KiB\s+team=analytics\s+airflow_", rows[0]), rows
    assert len(re.findall(r"^  per_region\[\d\]\s+inserted\s+DONE", first, re.M)) == 2
    assert "inserted" not in second.split("===== summary")[0]
    assert len(re.findall(r"^  (build|check|per_region)\S*\s+reused\s+DONE", second, re.M)) == 4
    assert "Second run: 0 new jobs (expected 0)" in out
    assert "airflow-run=manual__2025-01-01t00_00_00_00_00" in out
