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


def test_triggers_starting_together_share_one_transport_and_one_token_request(emulated, monkeypatch):
    """Many triggers of one connection start in the same instant (a triggerer picking up its triggers),
    each building its first hook in the pool: one transport (credentials, session) is built, not one
    per thread that found none yet."""
    import time

    builds = []
    build = shared._build_transport

    def slow_build(hook):  # a token request takes a while
        builds.append(threading.current_thread().name)
        time.sleep(0.2)
        return build(hook)

    monkeypatch.setattr(shared, "_build_transport", slow_build)

    async def main():
        return await asyncio.gather(*(
            shared.ashared_hook("c", read_connection, project_id="test-project", location=None,
                                request_timeout=60.0 + i)  # other hooks, the same connection
            for i in range(6)))

    hooks = asyncio.run(main())
    assert len(builds) == 1 and len({id(h) for h in hooks}) == 6
    assert len({id(h.client._http) for h in hooks}) == 1

