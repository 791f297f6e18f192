"""Pytest fixtures for the fake (enable with ``pytest_plugins = ["tests.fakebq.pytest_plugin"]``).

One server per test session (starting it per test would cost more than the
tests), reset before every test so no state leaks between them.
"""

from __future__ import annotations

import pytest

from .remote import FakeBigQueryProcess
from .server import FakeBigQuery

TEST_PROJECT = "test-project"


@pytest.fixture(scope="session")
def fake_bq_server():
    """The session's in-process server (not reset; prefer ``fake_bq``)."""
    fake = FakeBigQuery().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake_bq(fake_bq_server):
    """A running fake BigQuery, freshly reset for this test."""
    fake_bq_server.reset()
    yield fake_bq_server
    fake_bq_server.reset()


def make_bq_client(url: str, project: str = TEST_PROJECT, **kwargs):
    """A real google.cloud.bigquery.Client pointed at a fake."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                           client_options=ClientOptions(api_endpoint=url), **kwargs)


@pytest.fixture
def bq_client(fake_bq):
    client = make_bq_client(fake_bq.url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def fake_bq_process():
    """The fake as a separate process (for tests that spawn other processes)."""
    fake = FakeBigQueryProcess.start()
    try:
        yield fake
    finally:
        fake.stop()
