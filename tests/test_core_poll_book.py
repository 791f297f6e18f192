"""The shared poller's bookkeeping (core/poll_book.py): which jobs a list settles, which need a read."""

from airflow_bqjobs.core import poll_book
from airflow_bqjobs.core.poll_book import DONE_OUTCOME, ERROR_OUTCOME, NOT_FOUND_OUTCOME, PollBook, Waiter


def waiter(job_id, got, poll_interval=10.0, **kw):
    return Waiter(job_id, "US", poll_interval, got.append, **kw)


def entry(job_id, state="RUNNING", created_ms=1_000_000):
    return {"jobReference": {"jobId": job_id}, "state": state, "statistics": {"creationTime": str(created_ms)}}


def job(state, created_ms=1_000_000):
    return {"status": {"state": state}, "statistics": {"creationTime": str(created_ms)}}


def test_a_new_job_is_settled_by_the_next_list_not_read():
    book, got = PollBook(), []
    book.add(waiter("a", got), now=0)
    assert book.due(now=100) == []
    assert book.after_list([entry("a")], now=1) == []
    assert got == []


def test_a_job_that_left_the_running_set_is_read_once_and_its_waiters_woken():
    book, got = PollBook(), []
    book.add(waiter("a", got), now=0)
    book.after_list([entry("a")], now=1)
    [watch] = book.after_list([], now=3)
    book.after_read(watch, job("DONE"), now=3)
    assert got == [(DONE_OUTCOME, job("DONE"))] and len(book) == 0


def test_a_job_registered_while_a_list_was_in_flight_waits_for_the_next_list():
    book, got = PollBook(), []
    book.add(waiter("a", got), now=5)
    assert book.after_list([], now=6, started=4) == []
    assert [w.job_id for w in book.after_list([], now=8, started=7)] == ["a"]


def test_a_job_never_listed_is_read_after_the_first_list():
    book, got = PollBook(), []
    book.add(waiter("a", got), now=0)
    assert [w.job_id for w in book.after_list([], now=1)] == ["a"]


def test_a_running_job_missing_from_the_list_is_read_on_its_own_schedule_until_listed_again():
    """Another principal's job (not in the caller's list), a child job, or a list that lags."""
    book, got = PollBook(), []
    book.add(waiter("a", got, poll_interval=4.0), now=0)
    [watch] = book.after_list([], now=1)
    book.after_read(watch, job("RUNNING"), now=1)
    assert book.after_list([], now=1.5) == []  # not due yet: 1 s, 1.5 s, ... up to poll_interval
    assert book.due(now=2.0) == [watch]
    book.after_list([entry("a")], now=2.5)
    assert watch.read_at is None and book.due(now=1000) == []


def test_two_waiters_on_one_job_share_one_read_and_are_both_woken():
    book, got1, got2 = PollBook(), [], []
    book.add(waiter("a", got1), now=0)
    book.add(waiter("a", got2), now=0)
    [watch] = book.after_list([], now=1)
    book.after_read(watch, job("DONE"), now=1)
    assert got1 == got2 == [(DONE_OUTCOME, job("DONE"))]


def test_a_waiter_that_leaves_does_not_end_the_watch_of_the_other():
    book, got1, got2 = PollBook(), [], []
    first = waiter("a", got1)
    book.add(first, now=0)
    book.add(waiter("a", got2), now=0)
    book.remove(first)
    [watch] = book.after_list([], now=1)
    book.after_read(watch, job("DONE"), now=1)
    assert got1 == [] and got2 == [(DONE_OUTCOME, job("DONE"))]


def test_a_read_answered_after_every_waiter_left_is_dropped():
    book, got = PollBook(), []
    w = waiter("a", got)
    book.add(w, now=0)
    [watch] = book.after_list([], now=1)
    book.remove(w)
    book.after_read(watch, job("DONE"), now=1)
    assert got == [] and len(book) == 0


def test_not_found_is_re_read_briefly_then_an_outcome():
    book, got = PollBook(), []
    book.add(waiter("a", got, not_found_delays=(0.25, 0.5)), now=0)
    [watch] = book.after_list([], now=1)
    book.after_read(watch, None, now=1)
    assert watch.read_at == 1.25 and got == []
    book.after_read(watch, None, now=1.25)
    book.after_read(watch, None, now=1.75)
    assert got == [(NOT_FOUND_OUTCOME, None)]


def test_not_found_ok_keeps_waiting_for_the_job_to_appear():
    book, got = PollBook(), []
    book.add(waiter("a", got, not_found_ok=True, not_found_delays=()), now=0)
    [watch] = book.after_list([], now=1)
    book.after_read(watch, None, now=1)
    assert got == [] and watch.read_at is not None
    book.after_read(watch, job("DONE"), now=5)
    assert got == [(DONE_OUTCOME, job("DONE"))]


def test_a_permanent_read_error_ends_the_wait_and_a_transient_one_backs_off():
    book, got = PollBook(), []
    book.add(waiter("a", got), now=0)
    [watch] = book.after_list([], now=1)
    assert book.read_failed(watch, "503", transient=True, now=1) > 0 and got == []
    book.read_failed(watch, "403 accessDenied", transient=False, now=2)
    assert got == [(ERROR_OUTCOME, "403 accessDenied")]


def test_transient_list_errors_back_off_then_fall_back_to_reading_each_job():
    book, got = PollBook(), []
    book.add(waiter("a", got), now=0)
    pauses = [book.list_failed(permanent=False) for _ in range(poll_book.FALLBACK_AFTER - 1)]
    assert not book.fallback and all(0 < p <= poll_book.LIST_INTERVAL_S * 8 for p in pauses)
    assert book.list_failed(permanent=False) == poll_book.FALLBACK_RETRY_S and book.fallback
    assert [w.job_id for w in book.due(now=1)] == ["a"]
    book.add(waiter("b", got), now=2)  # registered during the fallback: read too
    assert "b" in [w.job_id for w in book.due(now=2)]
    book.after_list([entry("a"), entry("b")], now=3)  # the list works again
    assert not book.fallback and book.due(now=1000) == []


def test_a_permanent_list_error_falls_back_at_once():
    book = PollBook()
    book.add(waiter("a", []), now=0)
    book.list_failed(permanent=True)
    assert book.fallback


def test_min_creation_time_is_unbounded_until_every_job_is_known_then_the_oldest_minus_a_margin():
    book = PollBook()
    book.add(waiter("a", []), now=0)
    book.add(waiter("b", []), now=0)
    assert book.min_creation_ms() is None
    [watch_b] = book.after_list([entry("a", created_ms=5_000_000)], now=1)
    assert book.min_creation_ms() is None
    book.after_read(watch_b, job("RUNNING", created_ms=4_000_000), now=1)
    assert book.min_creation_ms() == 4_000_000 - poll_book.CREATION_MARGIN_MS


def test_the_list_interval_is_the_default_or_a_shorter_poll_interval():
    book = PollBook()
    book.add(waiter("a", [], poll_interval=10.0), now=0)
    assert book.list_interval() == poll_book.LIST_INTERVAL_S
    book.add(waiter("b", [], poll_interval=0.5), now=0)
    assert book.list_interval() == 0.5


def test_progress_comes_from_the_list_entries_at_no_extra_request():
    book, seen = PollBook(), []
    book.add(Waiter("a", "US", 10.0, lambda o: None, on_update=seen.append), now=0)
    running = entry("a")
    running["statistics"]["query"] = {"totalSlotMs": "1234"}
    book.after_list([running], now=1)
    assert seen == [running]


def test_a_failing_progress_callback_does_not_stop_the_polling():
    book = PollBook()

    def boom(job):
        raise ValueError("bad progress")

    book.add(Waiter("a", "US", 10.0, lambda o: None, on_update=boom), now=0)
    assert book.after_list([entry("a")], now=1) == []
