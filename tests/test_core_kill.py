"""The kill rule (airflow_bqjobs.core.kill): cancel only a job that no newer try of the task follows."""

import pytest

from airflow_bqjobs.core.kill import UNKNOWN, may_cancel


@pytest.mark.parametrize("state", ["failed", "success", "skipped", "upstream_failed", "removed"])
def test_a_task_instance_that_ended_cancels(state):
    assert may_cancel(state, reattach_on_clear=False, retry_left=True)
    assert may_cancel(state, reattach_on_clear=True, retry_left=None)


@pytest.mark.parametrize("state", [None, "restarting"])
def test_a_cleared_task_instance_cancels_unless_reattach_on_clear(state):
    assert may_cancel(state, reattach_on_clear=False, retry_left=True)
    assert not may_cancel(state, reattach_on_clear=True, retry_left=True)


@pytest.mark.parametrize("state", ["up_for_retry", "up_for_reschedule", "scheduled", "queued", "deferred"])
def test_a_try_that_follows_the_job_keeps_it(state):
    for retry_left in (True, False, None):
        assert not may_cancel(state, reattach_on_clear=False, retry_left=retry_left)


def test_running_is_this_try_shut_down_or_a_newer_try():
    assert not may_cancel("running", reattach_on_clear=False, retry_left=True)  # its retry reattaches
    assert not may_cancel("running", reattach_on_clear=False, retry_left=None)  # a trigger cannot tell
    assert may_cancel("running", reattach_on_clear=False, retry_left=False)  # no try will follow
    assert not may_cancel("running", reattach_on_clear=True, retry_left=False)


def test_an_unreadable_or_unknown_state_keeps_the_job():
    assert not may_cancel(UNKNOWN, reattach_on_clear=False, retry_left=False)
    assert not may_cancel("some_future_state", reattach_on_clear=False, retry_left=False)


@pytest.mark.parametrize("state", ["scheduled", "queued", "running"])
def test_a_trigger_whose_task_was_cleared_while_deferred_cancels_unless_reattach_on_clear(state):
    # A takeover or a restart keeps the task deferred; scheduled/queued/running again means a clear (new job ID).
    assert may_cancel(state, reattach_on_clear=False, retry_left=None, trigger=True)
    assert not may_cancel(state, reattach_on_clear=True, retry_left=None, trigger=True)
    assert not may_cancel(state, reattach_on_clear=False, retry_left=True)  # a worker's retry follows
