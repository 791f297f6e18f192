"""Fixtures of the reliability suite, and the chaos figures for the terminal summary (printed whether
or not pytest captures output)."""

from __future__ import annotations

import pytest

from tests.emulator import fast_retries
from tests.reliability.environment import point_at_fake

FIGURES_PROPERTY = "bqjobs_figures"  # tests/conftest.py's pytest_terminal_summary prints these


@pytest.fixture
def emulator(fake_bq, monkeypatch):
    """The in-process fake behind connection ``CONN_ID``, with fast request retries."""
    point_at_fake(monkeypatch, fake_bq.url)
    fast_retries(monkeypatch, timeout=60.0)
    return fake_bq


@pytest.fixture
def report_figures(request):
    """``report_figures(title, lines)``: shown in the terminal summary of the session (tests/conftest.py
    prints them). Carried in the test's report (``user_properties``), which pytest-xdist sends from the
    worker that ran the test to the process that prints the summary."""
    return lambda title, lines: request.node.user_properties.append((FIGURES_PROPERTY, (title, list(lines))))
