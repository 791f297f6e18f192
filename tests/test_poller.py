"""The shared poller (triggers/_poller.py) in every lifecycle, over real HTTP to the fake BigQuery.

Triggers run as the triggerer runs them: coroutines of one event loop, cancelled on a kill, a
takeover or a restart (Airflow 3.3 then awaits ``on_kill`` for a kill only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

from airflow_bqjobs.core.job_ref import JobRef
from airflow_bqjobs.hooks import shared
from airflow_bqjobs.hooks.jobs import BigQueryJobsHook
from airflow_bqjobs.triggers import _poller
from airflow_bqjobs.triggers.job import BigQueryJobTrigger
from tests.airflow_context import first_event, rebuild_trigger

QUERY = {"query": {"query": "SELECT 1", "useLegacySql": False}}
CONN = "no_such_conn"


def insert(hook, fake_bq, job_id, running_s=0.5, location=None, **behaviour):
    fake_bq.add_rule(job_id=f"^{job_id}$", pending_s=0, running_s=running_s, **behaviour)
    return hook.insert_job(JobRef(job_id, location=location), QUERY)["jobReference"]


def trigger_for(ref: dict, **kw) -> BigQueryJobTrigger:
    kw.setdefault("poll_interval", 0.2)
    return BigQueryJobTrigger(job=ref, gcp_conn_id=CONN, **kw)


async def payload(trigger) -> dict:
    async for event in trigger.run():
        return event.payload
    raise AssertionError("no event")


def run(coro, timeout: float = 30.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def cancel(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def poller_of(trigger) -> _poller.JobPoller:
    return _poller.job_poller(await trigger.hook())


def gets(fake_bq, job_id):
    return fake_bq.calls_for("get", job_id=job_id)


# -- registration and the shared list ---------------------------------------------------------------

def test_many_triggers_cost_one_list_per_round_and_one_read_per_job(fake_bq, hook):
    refs = [insert(hook, fake_bq, f"many_{i}", running_s=0.6 + 0.1 * i) for i in range(6)]

    async def main():
        return await asyncio.gather(*(payload(trigger_for(ref)) for ref in refs))

    assert [p["status"] for p in run(main())] == ["done"] * 6
    assert [len(gets(fake_bq, r["jobId"])) for r in refs] == [1] * 6
    lists = fake_bq.calls_for("list")
    assert 2 <= len(lists) <= 15  # ~1.1 s of waiting at 0.2 s per round, whatever the number of triggers


def test_the_list_asks_for_pending_and_running_jobs_minimal_and_bounded_by_the_oldest_job(fake_bq, hook):
    ref = insert(hook, fake_bq, "bounded", running_s=1.0)
    run(payload(trigger_for(ref)))
    lists = [c["query"] for c in fake_bq.calls_for("list")]
    assert all(q["stateFilter"] == ["pending", "running"] and q["projection"] == ["minimal"] for q in lists)
    assert "allUsers" not in lists[0] and "minCreationTime" not in lists[0]  # creation unknown until listed
    created_ms = int(fake_bq.job("bounded")["resource"]["statistics"]["creationTime"])
    assert int(lists[-1]["minCreationTime"][0]) == created_ms - 60_000


def test_the_list_is_paged_to_the_end(fake_bq, hook, monkeypatch):
    monkeypatch.setattr(_poller, "PAGE_SIZE", 2)
    refs = [insert(hook, fake_bq, f"paged_{i}", running_s=1.2) for i in range(5)]

    async def main():
        return await asyncio.gather(*(payload(trigger_for(ref)) for ref in refs))

    assert [p["status"] for p in run(main())] == ["done"] * 5
    assert [len(gets(fake_bq, r["jobId"])) for r in refs] == [1] * 5  # no job lost on a later page
    assert any("pageToken" in c["query"] for c in fake_bq.calls_for("list"))


def test_two_triggers_on_the_same_job_share_one_read(fake_bq, hook):
    ref = insert(hook, fake_bq, "same_job", running_s=0.8)

    async def main():
        return await asyncio.gather(payload(trigger_for(ref)), payload(trigger_for(ref, poll_interval=0.5)))

    assert [p["status"] for p in run(main())] == ["done", "done"]
    assert len(gets(fake_bq, "same_job")) == 1


def test_jobs_in_several_locations_share_one_list_and_are_read_where_they_run(fake_bq, hook):
    refs = [insert(hook, fake_bq, f"loc_{i}", running_s=0.8, location=loc)
            for i, loc in enumerate(["US", "EU", "asia-northeast1"])]

    async def main():
        return await asyncio.gather(*(payload(trigger_for(ref)) for ref in refs))

    assert [p["status"] for p in run(main())] == ["done"] * 3
    for ref in refs:
        [get] = gets(fake_bq, ref["jobId"])
        assert get["status"] == 200 and get["query"]["location"] == [ref["location"]]


def test_another_users_job_is_confirmed_by_jobs_get_and_read_on_its_own_schedule(fake_bq, hook):
    """Without allUsers the list shows only the caller's jobs: the sensor's jobs of other users are
    absent from it, and must not be taken for finished."""
    ref = insert(hook, fake_bq, "theirs", running_s=1.5, user_email="someone-else@example.com")
    assert run(payload(trigger_for(ref, poll_interval=0.5)))["status"] == "done"
    statuses = [c["status"] for c in gets(fake_bq, "theirs")]
    assert statuses == [200] * len(statuses) and len(statuses) >= 2  # running (confirmed), then DONE
    assert fake_bq.job("theirs")["cancel_requested"] is False


def test_a_job_already_done_is_noticed_at_the_first_round(fake_bq, hook):
    ref = insert(hook, fake_bq, "already_done", running_s=0.0)
    time.sleep(0.1)
    start = time.monotonic()
    assert run(payload(trigger_for(ref, poll_interval=10.0)))["status"] == "done"
    assert time.monotonic() - start < 2.0


def test_a_deleted_job_ends_the_wait_with_not_found(fake_bq, hook, monkeypatch):
    import airflow_bqjobs.triggers.job as trigger_module

    monkeypatch.setattr(trigger_module, "READ_AFTER_CONFLICT_DELAYS", (0.05, 0.05))
    event = run(payload(trigger_for({"projectId": "test-project", "jobId": "never_inserted"})))
    assert event["status"] == "error" and "was not found" in event["message"]
    assert len(gets(fake_bq, "never_inserted")) == 3


def test_not_found_ok_keeps_waiting_until_the_job_appears(fake_bq, hook):
    """The poller's side of the sensor's ``not_found_ok`` (a 404 means "not there yet")."""
    ref = JobRef("appears_later", project_id="test-project", location="US")

    async def main():
        poller = _poller.job_poller(shared.shared_hook(CONN, None, project_id="test-project", location=None,
                                                       request_timeout=60.0))
        outcome = poller.watch(ref, poll_interval=0.2, not_found_ok=True, not_found_delays=())
        await asyncio.sleep(0.8)
        assert not outcome.done()
        await asyncio.to_thread(insert, hook, fake_bq, "appears_later", 0.3, "US")
        return await asyncio.wait_for(outcome, 10)

    kind, job = run(main())
    assert kind == "done" and job["status"]["state"] == "DONE"
    assert [c["status"] for c in gets(fake_bq, "appears_later")][:2] == [404, 404]


def test_progress_updates_come_from_the_list_at_no_extra_request(fake_bq, hook):
    ref = JobRef("with_progress", project_id="test-project", location="US")
    insert(hook, fake_bq, "with_progress", running_s=1.0)
    seen = []

    async def main():
        poller = _poller.job_poller(shared.shared_hook(CONN, None, project_id="test-project", location=None,
                                                       request_timeout=60.0))
        return await poller.watch(ref, poll_interval=0.2, on_update=seen.append)

    assert run(main())[0] == "done"
    assert len(seen) >= 2 and all("statistics" in s and "configuration" not in s for s in seen)
    assert len(gets(fake_bq, "with_progress")) == 1


def test_a_list_slower_than_the_interval_does_not_stretch_the_rounds(fake_bq, hook):
    """Rounds start every interval from the previous list's start: at N = 5,000 a list takes 5 pages,
    and that time must not add to how late a finished job is seen."""
    fake_bq.inject("delay", "list", delay_s=0.9)
    ref = insert(hook, fake_bq, "slow_lists", running_s=4.5)
    event = run(payload(trigger_for(ref, poll_interval=1.0)))
    assert event["status"] == "done"
    starts = [c["time"] for c in fake_bq.calls_for("list")]  # answered 0.9 s after each list was sent
    gaps = sorted(b - a for a, b in zip(starts, starts[1:]))
    assert len(gaps) >= 2 and gaps[len(gaps) // 2] < 1.45, gaps  # every 1.9 s if the list's time were added


# -- cancellation: kill, takeover, restart, deadline -----------------------------------------------

def test_a_user_kill_cancels_that_job_only(fake_bq, hook, monkeypatch):
    from types import SimpleNamespace

    from airflow_bqjobs.triggers import job as trigger_module

    async def marked_failed(task_instance):  # what Airflow answers for a task a user marked failed
        return "failed"

    monkeypatch.setattr(trigger_module, "task_instance_state", marked_failed)
    killed_ref = insert(hook, fake_bq, "killed", running_s=30)
    kept_ref = insert(hook, fake_bq, "kept", running_s=1.0)

    async def main():
        killed = trigger_for(killed_ref)
        killed.task_instance = SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1)
        killed_task = asyncio.ensure_future(payload(killed))
        kept_task = asyncio.ensure_future(payload(trigger_for(kept_ref)))
        await asyncio.sleep(0.5)
        await cancel(killed_task)
        await killed.on_kill()  # what Airflow 3.3's trigger runner does after cancelling a killed task
        poller = await poller_of(killed)
        assert "killed" not in poller.book.watches
        return await kept_task

    assert run(main())["status"] == "done"
    assert fake_bq.job("killed")["cancel_requested"] is True
    assert fake_bq.job("kept")["cancel_requested"] is False


def test_a_takeover_or_restart_leaves_the_job_running_for_the_rebuilt_trigger(fake_bq, hook):
    ref = insert(hook, fake_bq, "moved", running_s=2.0)
    trigger = trigger_for(ref)

    async def first_triggerer():
        task = asyncio.ensure_future(payload(trigger))
        await asyncio.sleep(0.5)
        await cancel(task)  # reassigned to another triggerer, or this one stopped: no on_kill
        poller = await poller_of(trigger)
        await asyncio.sleep(0.3)
        return poller

    poller = run(first_triggerer())
    assert len(poller.book) == 0 and poller._task.done()  # the poller stopped with its last waiter
    assert fake_bq.job("moved")["state"] == "RUNNING" and fake_bq.job("moved")["cancel_requested"] is False
    assert first_event(rebuild_trigger(trigger))["status"] == "done"  # the next triggerer's poller


def test_a_deadline_while_a_list_is_in_flight_times_out_on_time(fake_bq, hook):
    ref = insert(hook, fake_bq, "late", running_s=30)
    fake_bq.inject("delay", "list", count=1, delay_s=3.0)
    start = time.monotonic()
    event = run(payload(trigger_for(ref, deadline=time.time() + 0.7)))
    assert event["status"] == "timeout" and time.monotonic() - start < 2.5
    assert fake_bq.job("late")["cancel_requested"] is True


def test_a_kill_while_a_list_is_in_flight_returns_at_once_and_the_others_get_the_answer(fake_bq, hook):
    a, b = insert(hook, fake_bq, "in_flight_a", running_s=0.5), insert(hook, fake_bq, "in_flight_b", running_s=0.5)
    fake_bq.inject("delay", "list", count=1, delay_s=1.5)

    async def main():
        task_a = asyncio.ensure_future(payload(trigger_for(a)))
        task_b = asyncio.ensure_future(payload(trigger_for(b)))
        await asyncio.sleep(0.4)  # the first list is now held by the server
        start = time.monotonic()
        await cancel(task_a)
        cancelled_in = time.monotonic() - start
        return cancelled_in, await task_b

    cancelled_in, event_b = run(main())
    assert cancelled_in < 0.2 and event_b["status"] == "done"
    assert gets(fake_bq, "in_flight_a") == [] and fake_bq.job("in_flight_a")["cancel_requested"] is False


# -- errors ------------------------------------------------------------------------------------------

def test_transient_list_errors_only_delay_the_wait(fake_bq, hook):
    ref = insert(hook, fake_bq, "flaky_list", running_s=0.5)
    fake_bq.inject("503", "list", count=1)
    fake_bq.inject("reset_before", "list", count=1)
    assert run(payload(trigger_for(ref)))["status"] == "done"
    assert fake_bq.fault_counts.get("list:503") == 1 and fake_bq.fault_counts.get("list:reset_before") == 1
    assert len(gets(fake_bq, "flaky_list")) == 1


def test_a_list_that_keeps_failing_falls_back_to_reading_each_job(fake_bq, hook, caplog):
    refs = [insert(hook, fake_bq, f"no_list_{i}", running_s=1.0) for i in range(2)]
    fake_bq.inject("500", "list")  # every list, for good

    async def main():
        return await asyncio.gather(*(payload(trigger_for(ref)) for ref in refs))

    assert [p["status"] for p in run(main())] == ["done", "done"]
    assert "keeps failing" in caplog.text
    assert all(gets(fake_bq, r["jobId"])[-1]["status"] == 200 for r in refs)


def test_a_permanent_read_error_ends_that_wait_with_an_error_event(fake_bq, hook, monkeypatch):
    """E.g. the connection may list jobs but not read this one (403 accessDenied): not retried."""
    from google.api_core.exceptions import Forbidden

    ref = insert(hook, fake_bq, "forbidden", running_s=0.3)
    real_get = BigQueryJobsHook.get_job

    def get_job(self, job_ref, **kwargs):
        if job_ref.job_id == "forbidden":
            raise Forbidden("Access Denied: Job test-project:US.forbidden", errors=[{"reason": "accessDenied"}])
        return real_get(self, job_ref, **kwargs)

    monkeypatch.setattr(BigQueryJobsHook, "get_job", get_job)
    event = run(payload(trigger_for(ref)))
    assert event["status"] == "error" and "Cannot read job" in event["message"] and "Access Denied" in event["message"]


# -- the poller's own lifecycle ----------------------------------------------------------------------

def test_a_poller_that_dies_is_restarted_and_its_triggers_still_finish(fake_bq, hook, monkeypatch):
    monkeypatch.setattr(_poller, "RESTART_DELAY_S", 0.1)
    real_round, calls = _poller.JobPoller._list_round, []

    async def dies_once(self):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("bug in a round")
        return await real_round(self)

    monkeypatch.setattr(_poller.JobPoller, "_list_round", dies_once)
    ref = insert(hook, fake_bq, "survives", running_s=0.5)
    trigger = trigger_for(ref)

    async def main():
        event = await payload(trigger)
        return event, (await poller_of(trigger)).restarts

    event, restarts = run(main())
    assert event["status"] == "done" and restarts == 1


def test_a_poller_task_cancelled_from_outside_is_restarted_by_its_waiting_triggers(fake_bq, hook, monkeypatch):
    monkeypatch.setattr(_poller, "WATCHDOG_S", 0.3)
    ref = insert(hook, fake_bq, "watchdog", running_s=1.5)
    trigger = trigger_for(ref)

    async def main():
        task = asyncio.ensure_future(payload(trigger))
        await asyncio.sleep(0.3)
        poller = await poller_of(trigger)
        await cancel(poller._task)
        return await task

    assert run(main())["status"] == "done"


def test_several_event_loops_each_get_their_poller_on_one_shared_session(fake_bq, hook):
    refs = [insert(hook, fake_bq, f"loop_{i}", running_s=0.8) for i in range(3)]
    shared.stats["transports"] = 0
    results, pollers = {}, {}

    def thread(i, ref):
        async def main():
            trigger = trigger_for(ref)
            event = await payload(trigger)
            pollers[i] = await poller_of(trigger)
            return event

        results[i] = run(main())["status"]

    threads = [threading.Thread(target=thread, args=(i, ref)) for i, ref in enumerate(refs + [refs[0]])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {0: "done", 1: "done", 2: "done", 3: "done"}
    assert len({id(p) for p in pollers.values()}) == 4  # one poller per loop
    assert shared.stats["transports"] == 1  # one session and credentials for the process


def test_several_processes_each_poll_for_themselves(fake_bq, hook):
    """This process and a second one wait on the same jobs, each with its own poller."""
    refs = [insert(hook, fake_bq, f"proc_{i}", running_s=4.0) for i in range(2)]
    script = textwrap.dedent("""
        import asyncio, json, sys
        from airflow_bqjobs.triggers.job import BigQueryJobTrigger

        async def main(refs):
            async def one(ref):
                async for event in BigQueryJobTrigger(job=ref, gcp_conn_id="no_such_conn", poll_interval=0.2).run():
                    return event.payload["status"]
            return await asyncio.gather(*(one(ref) for ref in refs))

        print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))
    """)
    env = {**os.environ, "BIGQUERY_EMULATOR_HOST": fake_bq.url}
    other = subprocess.Popen([sys.executable, "-c", script, json.dumps(refs)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)

    async def main():
        return await asyncio.gather(*(payload(trigger_for(ref)) for ref in refs))

    here = [p["status"] for p in run(main())]
    out, err = other.communicate(timeout=120)
    assert here == ["done", "done"] and json.loads(out.strip().splitlines()[-1]) == ["done", "done"], err[-2000:]
    assert [len(gets(fake_bq, r["jobId"])) for r in refs] == [2, 2]  # one read per job per process


def test_one_token_request_for_every_trigger_of_a_connection_with_a_service_account_key(fake_bq, monkeypatch):
    from google.auth import _regional_access_boundary_utils as boundary
    from google.cloud.bigquery import _http

    from tests.reliability.environment import set_connection
    from tests.reliability.fake_google_auth import TokenEndpoint, make_service_account

    endpoint = TokenEndpoint().start()
    try:
        account = make_service_account(endpoint.url)
        endpoint.accounts.append(account)
        monkeypatch.setattr(boundary, "get_service_account_rab_endpoint", endpoint.boundary_lookup_url)
        monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
        monkeypatch.setattr(_http.Connection, "DEFAULT_API_ENDPOINT", fake_bq.url)
        set_connection(monkeypatch, "bq_keyed", {"keyfile_dict": account.keyfile_json, "project": "test-project"})
        shared.reset()
        keyed = BigQueryJobsHook("bq_keyed")
        refs = [keyed.insert_job(JobRef(f"keyed_{i}"), QUERY)["jobReference"] for i in range(20)]
        before = endpoint.verified_assertions  # the hook above fetched its own token

        async def main():
            return await asyncio.gather(*(payload(BigQueryJobTrigger(job=ref, gcp_conn_id="bq_keyed",
                                                                     poll_interval=0.2)) for ref in refs))

        assert [p["status"] for p in run(main())] == ["done"] * 20
        assert endpoint.verified_assertions - before == 1
    finally:
        shared.reset()
        endpoint.stop()
