"""The shared poller leaves nothing for the garbage collector: a list round of many running jobs and a
finished wait are freed by reference counting, over real HTTP to the fake BigQuery.

(Issue 9: at N = 5,000 waiting triggers, full collections, each stopping the event loop for
100-300 ms, came every few seconds; see tests/test_core_poll_book_listed.py for the entries.)
"""

from __future__ import annotations

import asyncio
import gc
import weakref

from airflow_bqjobs.core.job_ref import JobRef
from airflow_bqjobs.hooks import shared
from airflow_bqjobs.triggers import _poller
from tests.test_poller import CONN, insert


def poller_hook():
    return shared.shared_hook(CONN, None, project_id="test-project", location=None, request_timeout=60.0)


def test_a_list_round_decodes_running_jobs_into_untracked_tuples(fake_bq, hook):
    for i in range(5):
        insert(hook, fake_bq, f"long_{i}", running_s=60.0)
    loop = asyncio.new_event_loop()
    try:
        entries = _poller.JobPoller(poller_hook(), loop)._list(None, frozenset({"long_0"}))  # as run in its pool
    finally:
        loop.close()
    gc.collect()
    by_id = {e[0]: e for e in entries}
    assert set(by_id) == {f"long_{i}" for i in range(5)}
    assert all(e[1] == "RUNNING" and e[3] is None and not gc.is_tracked(e) for k, e in by_id.items() if k != "long_0")
    assert by_id["long_0"][3]["jobReference"]["jobId"] == "long_0"  # kept whole: its progress is due


def test_a_finished_wait_is_freed_without_the_garbage_collector(fake_bq, hook):
    ref = JobRef("quick", project_id="test-project", location="US")
    insert(hook, fake_bq, "quick", running_s=0.2)
    refs = []

    async def main():
        poller = _poller.job_poller(poller_hook())
        outcome = poller.watch(ref, poll_interval=0.2)
        refs.append(weakref.ref(outcome))
        refs.append(weakref.ref(outcome.waiter))
        kind, job = await outcome
        poller.unwatch(outcome)  # as the trigger does when its wait ends
        return kind

    gc.disable()
    try:
        assert asyncio.run(main()) == "done"
        assert [r() for r in refs] == [None, None]
    finally:
        gc.enable()


def test_progress_lines_come_from_the_list_once_per_update_interval(fake_bq, hook):
    ref = JobRef("steady", project_id="test-project", location="US")
    insert(hook, fake_bq, "steady", running_s=1.5)
    seen = []

    async def main():
        poller = _poller.job_poller(poller_hook())
        outcome = poller.watch(ref, poll_interval=0.1, on_update=seen.append, update_interval=60.0)
        try:
            return (await outcome)[0], poller.rounds
        finally:
            poller.unwatch(outcome)

    kind, rounds = asyncio.run(asyncio.wait_for(main(), 30))
    assert kind == "done" and rounds >= 5
    assert len(seen) == 1 and seen[0]["jobReference"]["jobId"] == "steady"
    assert len(fake_bq.calls_for("get", job_id="steady")) == 1
