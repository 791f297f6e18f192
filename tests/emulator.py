"""Pointing the provider's hook at the fake BigQuery server, for every test module that needs it."""

from __future__ import annotations

import dataclasses

import pytest

from airflow_bqjobs.hooks.jobs import BigQueryJobsHook

_REAL_RETRY = BigQueryJobsHook.__dict__["retry"].func


def fast_retries(monkeypatch: pytest.MonkeyPatch, timeout: float = 10.0) -> None:
    """The hook's own transient-error retry (rule, loop, logging, deadlines), with millisecond backoff
    instead of seconds and at most ``timeout`` seconds."""

    def fast(self):
        policy = _REAL_RETRY(self)
        return dataclasses.replace(policy, deadline=min(policy.deadline, timeout), initial=0.01, maximum=0.05)

    monkeypatch.setattr(BigQueryJobsHook, "retry", property(fast))


def use_fake(monkeypatch: pytest.MonkeyPatch, url: str, timeout: float = 10.0) -> None:
    """Every hook built without a connection reaches ``url`` (via BIGQUERY_EMULATOR_HOST), retrying fast."""
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", url)
    fast_retries(monkeypatch, timeout)
