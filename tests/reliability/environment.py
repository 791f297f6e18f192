"""Where the reliability tests' operators send their requests: the fake, through a real connection."""

from __future__ import annotations

import json

import pytest

CONN_ID = "bq_reliability"
PROJECT = "test-project"


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, extra: dict) -> None:
    """A connection found in the environment, as Airflow finds ``AIRFLOW_CONN_*`` ones."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}",
                       json.dumps({"conn_type": "google_cloud_platform", "extra": extra}))


def point_at_fake(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """The hook reaches the fake through connection ``CONN_ID`` (and the emulator variable)."""
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", url)
    set_connection(monkeypatch, CONN_ID, {"emulator_host": url, "project": PROJECT})


