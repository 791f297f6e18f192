"""When a stopped wait may cancel its job: only when no newer try of the task instance follows it.

Airflow stops a wait for reasons that are not a user's kill, through the same calls as a kill:

* the Task SDK supervisor SIGTERMs a try whose heartbeat is answered 404/409/410 (the task instance
  moved on to a newer try: a zombie) or that failed ``max_failed_heartbeats`` times, and the task
  runner's SIGTERM handler calls ``on_kill`` (Airflow 2: the local task job's heartbeat does the
  same);
* the triggerer (3.3) cancels a trigger reassigned to another triggerer through the same path as a
  user action and calls the trigger's ``on_kill``; older triggerers just cancel it.

So the caller reads the task instance's *current* state from Airflow and :func:`may_cancel` decides.
Timeouts (the worker's ``execution_timeout``, the trigger's own deadline) do not come here: they
always cancel.
"""

from __future__ import annotations

# The task instance ended: a user marked it failed/success (or skipped), or a newer try ended it.
ENDED = frozenset({"failed", "success", "skipped", "upstream_failed", "removed"})
# Cleared: Airflow sets no state (or "restarting" for a running try); its next try starts a new job
# unless reattach_on_clear.
CLEARED = frozenset({None, "restarting"})
# A try of the task instance waits for, or is about to take over, the job: a retry, a reschedule,
# another triggerer (takeover), a newer try that reattached.
FOLLOWED = frozenset({"up_for_retry", "up_for_reschedule", "scheduled", "queued", "deferred"})
# For a trigger, a task instance already scheduled, queued or running again left ``deferred`` while
# the trigger still waited: it was cleared, and its next try starts a new job unless reattach_on_clear
# (with a quick scheduler the cleared try already runs, and has submitted that job, when the old
# trigger reads the state). A takeover or a triggerer restart keeps it ``deferred``; a trigger that
# fired is never killed (its ``run()`` has returned); a trigger timeout is past the trigger's own
# deadline (3.3 calls no ``on_kill`` then); in a takeover race where the other triggerer fired first
# the job is DONE, and cancelling it changes nothing, unless that copy fired an error for a job still
# running (it could not read it): then the task resumed the same try and its retry reattaches to the
# job, which this rule cancels; only the try_number and max_tries would tell it from a clear, and the
# triggerer's state read returns the state alone (tests/test_trigger_kill_review.py, strict xfail).
# For a worker's try they are its retry, which
# follows (and ``running`` is decided by ``retry_left``).
CLEARED_WHILE_DEFERRED = frozenset({"scheduled", "queued", "running"})
# The state could not be read (API server / metadata DB unreachable).
UNKNOWN = "<unknown>"


def may_cancel(state: str | None, *, reattach_on_clear: bool, retry_left: bool | None,
               trigger: bool = False) -> bool:
    """Whether a wait stopped while its task instance is in ``state`` may cancel the job.

    ``retry_left``: whether the stopped try still had a retry (``try_number <= max_tries``); ``None``
    when the caller cannot tell (a trigger). It matters only for ``running``: that is either a newer
    try (which follows the job) or this very try being shut down (worker eviction, lost heartbeats),
    whose retry reattaches if it has one. ``trigger``: the caller is a trigger, for which
    ``scheduled``/``queued``/``running`` mean a clear (see :data:`CLEARED_WHILE_DEFERRED`).
    """
    if state == UNKNOWN:
        return False  # cannot prove that no try follows: the next try finds the job (jobTimeoutMs bounds it)
    if state in ENDED:
        return True
    if state in CLEARED or (trigger and state in CLEARED_WHILE_DEFERRED):
        return not reattach_on_clear
    if state == "running":
        return retry_left is False and not reattach_on_clear
    if state in FOLLOWED:
        return False
    return False  # a state Airflow may add later: leave the job to the try that follows


def why(state: str | None) -> str:
    return {None: "task cleared", UNKNOWN: "task state unreadable"}.get(state, f"task is {state}")
