"""Fixtures of the reliability suite, and a terminal section for the chaos figures (printed whether
or not pytest captures output)."""

from __future__ import annotations

import pytest

from tests.emulator import fast_retries
from tests.reliability.environment import point_at_fake

_FIGURES = pytest.StashKey[list]()


@pytest.fixture
def emulator(fake_bq, monkeypatch):
    """The in-process fake behind connection ``CONN_ID``, with fast request retries."""
    point_at_fake(monkeypatch, fake_bq.url)
    fast_retries(monkeypatch, timeout=60.0)
    return fake_bq


@pytest.fixture
def report_figures(request):
    """``report_figures(title, lines)``: shown in the terminal summary of the session."""
    figures = request.config.stash.setdefault(_FIGURES, [])
    return lambda title, lines: figures.append((title, list(lines)))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    for title, lines in config.stash.get(_FIGURES, []):
        terminalreporter.section(title)
        for line in lines:
            terminalreporter.write_line(line)
