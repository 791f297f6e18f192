"""The attach-or-run decision, applied to whatever BigQuery holds under a job ID on every attempt.

This is the seed's idempotent "run": a no-op for a running or completed job, a new start for a
missing or failed one. BigQuery never re-runs a job under its old ID, so "start again" means the next
generation of the ID (``base_1``, ``base_2``, ...), which the next retry finds the same way.
"""

from __future__ import annotations

import enum
from typing import Mapping

STOPPED_REASON = "stopped"


class Action(enum.Enum):
    INSERT = "insert"  # nothing under this ID: insert the job
    ATTACH = "attach"  # PENDING or RUNNING: wait for it, insert nothing
    SUCCEED = "succeed"  # DONE without errorResult: that job is the result, insert nothing
    NEXT_GENERATION = "next_generation"  # DONE with errorResult: run again under the next ID
    FAIL = "fail"  # cancelled and the user asked not to re-run cancelled jobs


def job_state(job: Mapping) -> str:
    return (job.get("status") or {}).get("state", "PENDING")


def error_result(job: Mapping) -> dict | None:
    return (job.get("status") or {}).get("errorResult") or None


def is_cancelled(job: Mapping) -> bool:
    err = error_result(job)
    return bool(err) and err.get("reason") == STOPPED_REASON


def decide(job: Mapping | None, *, rerun_cancelled: bool = True) -> Action:
    """What to do about ``job`` (a REST job resource, or ``None`` when the ID is free)."""
    if job is None:
        return Action.INSERT
    if job_state(job) != "DONE":
        return Action.ATTACH
    if error_result(job) is None:
        return Action.SUCCEED
    if is_cancelled(job) and not rerun_cancelled:
        return Action.FAIL
    return Action.NEXT_GENERATION
