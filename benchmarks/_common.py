"""What the benchmarks share: the two venvs, fresh subprocesses, the fake, statistics and tables.

Our side runs in the dev venv (``.venv``: the lock), Google's in ``.bench-venv`` (the same lock plus
apache-airflow-providers-google), each in fresh subprocesses, so one side's imports never weigh on
the other's figures. Only the standard library is imported here: both venvs run these modules.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
OURS, GOOGLE = "ours", "google"
VENV_NAMES = {OURS: ".venv", GOOGLE: ".bench-venv"}
PROJECT = "bench"
LOCATION = "US"
QUERY = {"query": {"query": "SELECT 1", "useLegacySql": False}}
# The connection both sides read (Google's hook needs one); BIGQUERY_EMULATOR_HOST points both
# clients at the fake, and neither then fetches an OAuth token.
CONNECTION = json.dumps({"conn_type": "google_cloud_platform", "extra": {"project": PROJECT, "is_anonymous": True}})

_AIRFLOW_HOME = tempfile.mkdtemp(prefix="bqjobs-bench-airflow-home-")
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)


def python_for(side: str) -> str:
    """The interpreter of a side's venv (``BENCH_OURS_PYTHON`` / ``BENCH_GOOGLE_PYTHON`` override)."""
    return os.environ.get(f"BENCH_{side.upper()}_PYTHON") or str(REPO_ROOT / VENV_NAMES[side] / "bin" / "python")


def child_env(**extra: str) -> dict:
    """A clean environment for a benchmark subprocess: throwaway AIRFLOW_HOME, the repo importable."""
    drop = ("AIRFLOW", "BIGQUERY_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        AIRFLOW_HOME=_AIRFLOW_HOME,
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        PYTHONPATH=str(REPO_ROOT),
    )
    env.update(extra)
    return env


def fake_env(url: str) -> dict:
    return child_env(BIGQUERY_EMULATOR_HOST=url, AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT=CONNECTION)


def run_json(side: str, args: list[str], env: dict | None = None, timeout: float = 600) -> dict:
    """Run ``python ARGS`` in a side's venv and parse the JSON on the last line of its stdout."""
    proc = subprocess.run([python_for(side), *args], cwd=REPO_ROOT, env=env or child_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"[{side}] python {' '.join(args)[:300]} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def start_fake():
    """The fake BigQuery in its own process (its CPU and memory are not the client's)."""
    from tests.fakebq.remote import FakeBigQueryProcess

    return FakeBigQueryProcess.start(python=python_for(OURS))


# -- statistics and tables ---------------------------------------------------------------------------

median = statistics.median


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def md_table(headers: list[str], rows: list[list]) -> str:
    """A markdown table whose columns line up in a terminal too."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *map(line, cells[1:])])


@dataclass
class Report:
    """One benchmark's output: detail tables, and the rows it contributes to the README summary."""

    title: str
    what: str
    tables: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: list[tuple[str, str, str]] = field(default_factory=list)  # (figure, ours, Google's)

    def markdown(self) -> str:
        parts = [f"### {self.title}", "", self.what, ""]
        for table in self.tables:
            parts += [table, ""]
        parts += [f"- {note}" for note in self.notes]
        return "\n".join(parts).rstrip() + "\n"
