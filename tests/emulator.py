"""Pointing the provider's hook at the fake BigQuery server, for every test module that needs it."""

from __future__ import annotations

import pytest
from google.api_core.retry import Retry

from airflow_bqjobs.core.transient import is_transient
from airflow_bqjobs.hooks.jobs import BigQueryJobsHook


def fast_retries(monkeypatch: pytest.MonkeyPatch, timeout: float = 10.0) -> None:
    """The hook's transient-error retry (the real rule), with millisecond backoff instead of seconds."""
    monkeypatch.setattr(
        BigQueryJobsHook, "retry", property(lambda self: Retry(predicate=is_transient, initial=0.01, maximum=0.05, timeout=timeout))
    )


def use_fake(monkeypatch: pytest.MonkeyPatch, url: str, timeout: float = 10.0) -> None:
    """Every hook built without a connection reaches ``url`` (via BIGQUERY_EMULATOR_HOST), retrying fast."""
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", url)
    fast_retries(monkeypatch, timeout)
