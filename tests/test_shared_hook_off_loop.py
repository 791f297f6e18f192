"""A trigger's first hook (client import, credentials, maybe a token request) is built off the event loop.

On a loaded triggerer that first build blocked the loop for 1.75 s ("Triggerer's async thread was
blocked"), delaying every other trigger; with credentials from a metadata server or a key it also
makes network requests. Later triggers of the same connection reuse the hook without a thread hop.
"""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import pytest

from airflow_bqjobs.hooks import shared


@pytest.fixture
def emulated(fake_bq, monkeypatch):
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", fake_bq.url)
    shared.reset()
    yield
    shared.reset()


async def read_connection(conn_id):
    return SimpleNamespace(extra_dejson={"project": "test-project"})


def test_the_first_hook_of_a_connection_is_built_off_the_event_loop(emulated, monkeypatch):
    built_on = []
    build = shared._build_transport

    def recording_build(hook):
        built_on.append(threading.current_thread())
        return build(hook)

    monkeypatch.setattr(shared, "_build_transport", recording_build)

    async def main():
        first = await shared.ashared_hook("c", read_connection, project_id="test-project", location=None,
                                          request_timeout=60.0)
        second = await shared.ashared_hook("c", read_connection, project_id="test-project", location=None,
                                           request_timeout=60.0)
        return threading.current_thread(), first, second

    loop_thread, first, second = asyncio.run(main())
    assert len(built_on) == 1 and built_on[0] is not loop_thread
    assert first is second
