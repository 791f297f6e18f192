"""Pointing the provider's hook at the fake BigQuery server, for every test module that needs it."""

from __future__ import annotations

import pytest

from airflow_bqjobs.hooks.jobs import BigQueryJobsHook, RetryPolicy


def fast_retries(monkeypatch: pytest.MonkeyPatch, timeout: float = 10.0) -> None:
    """The hook's transient-error retry (the real rule and loop), with millisecond backoff instead of seconds."""
    monkeypatch.setattr(
        BigQueryJobsHook,
        "retry",
        property(lambda self: RetryPolicy(min(timeout, self.retry_deadline), 0.01, 0.05, log=self.log.warning)),
    )


def use_fake(monkeypatch: pytest.MonkeyPatch, url: str, timeout: float = 10.0) -> None:
    """Every hook built without a connection reaches ``url`` (via BIGQUERY_EMULATOR_HOST), retrying fast."""
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", url)
    fast_retries(monkeypatch, timeout)
