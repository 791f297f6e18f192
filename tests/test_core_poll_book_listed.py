"""The poll book's compact list entries and progress cadence (core/poll_book.py).

A list of N running jobs every round must not fill the garbage collector's oldest generation: the
entries are decoded straight into untracked tuples, whole entries only where a waiter's progress
update is due (issue 9: full collections stopped the triggerer's loop for 100-300 ms every few
seconds at N = 5,000).
"""

import gc
import json

from airflow_bqjobs.core.poll_book import PollBook, Waiter, list_entry_hook, listed


def entry(job_id, state="RUNNING", created_ms=1_000_000):
    return {"id": f"p:US.{job_id}", "jobReference": {"projectId": "p", "jobId": job_id, "location": "US"},
            "state": state, "status": {"state": state},
            "statistics": {"creationTime": str(created_ms), "query": {"queryPlan": [{"status": "COMPLETE"}]}}}


def page(*entries, token=None):
    return json.dumps({"kind": "bigquery#jobList", "jobs": list(entries),
                       **({"nextPageToken": token} if token else {})}).encode()


def test_a_list_page_decodes_into_untracked_tuples_except_the_entries_kept_for_progress():
    decoded = json.loads(page(entry("a"), entry("b"), token="t2"), object_hook=list_entry_hook({"b"}))
    gc.collect()
    a, b = decoded["jobs"]
    assert a == ("a", "RUNNING", 1_000_000, None) and not gc.is_tracked(a)
    assert b[:3] == ("b", "RUNNING", 1_000_000) and b[3] == entry("b")
    assert decoded["nextPageToken"] == "t2"


def test_an_entry_without_a_top_level_state_takes_its_status_state():
    bare = entry("a")
    del bare["state"]
    assert listed(bare)[:3] == ("a", "RUNNING", 1_000_000)


def test_the_list_settles_a_job_from_its_compact_entry_without_a_progress_update():
    book, seen = PollBook(), []
    book.add(Waiter("a", "US", 10.0, lambda o: None, on_update=seen.append), now=0)
    assert book.after_list([("a", "RUNNING", 1_000_000, None)], now=1) == []
    assert seen == [] and book.watches["a"].listed and book.min_creation_ms() == 1_000_000 - 60_000


def test_a_compact_entry_of_a_job_that_left_the_list_means_a_read():
    book = PollBook()
    book.add(Waiter("a", "US", 10.0, lambda o: None), now=0)
    book.after_list([("a", "RUNNING", 1, None)], now=1)
    assert [w.job_id for w in book.after_list([("other", "RUNNING", 1, None)], now=3)] == ["a"]


def test_progress_is_wanted_at_once_then_once_per_update_interval():
    book, seen = PollBook(), []
    book.add(Waiter("a", "US", 10.0, lambda o: None, on_update=seen.append, update_interval=60.0), now=0)
    assert book.progress_wanted(now=1) == {"a"}
    book.after_list([listed(entry("a"), book.progress_wanted(1))], now=1)
    assert len(seen) == 1
    assert book.progress_wanted(now=30) == frozenset()
    book.after_list([listed(entry("a"), book.progress_wanted(30))], now=30)
    assert len(seen) == 1
    assert book.progress_wanted(now=61) == {"a"}


def test_progress_defaults_to_the_poll_interval_and_is_not_wanted_without_a_callback():
    book = PollBook()
    book.add(Waiter("a", "US", 5.0, lambda o: None, on_update=lambda job: None), now=0)
    book.add(Waiter("b", "US", 5.0, lambda o: None), now=0)
    book.after_list([entry("a"), entry("b")], now=1)
    assert book.progress_wanted(now=5) == frozenset()
    assert book.progress_wanted(now=6) == {"a"}


def test_the_waiter_asking_most_often_sets_a_shared_jobs_progress_cadence():
    book = PollBook()
    book.add(Waiter("a", "US", 10.0, lambda o: None, on_update=lambda job: None, update_interval=60.0), now=0)
    book.add(Waiter("a", "US", 10.0, lambda o: None, on_update=lambda job: None, update_interval=5.0), now=0)
    book.after_list([entry("a")], now=1)
    assert book.progress_wanted(now=6) == {"a"}
