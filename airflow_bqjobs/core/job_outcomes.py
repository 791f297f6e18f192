"""Per-job result entries of the cancel and delete operators: JSON-serialisable, one per job.

A cancel request is only a request: the job may finish first (succeeded, or failed for its own
reason), so the entry says how the job really ended, read from its final ``errorResult``.
"""

from __future__ import annotations

from typing import Any, Mapping

from airflow_bqjobs.core.decision import error_result, is_cancelled, job_state
from airflow_bqjobs.core.job_ref import JobRef

# Cancel outcomes.
CANCELLED = "cancelled"  # DONE with errorResult.reason "stopped"
SUCCEEDED = "succeeded"  # finished before the cancel took effect (or before it was asked)
FAILED = "failed"  # finished first, with its own error
CANCEL_PENDING = "cancel_pending"  # requested, not DONE yet (wait=False)
NOT_FOUND = "not_found"  # no such job (missing_ok=True)

# Delete outcomes.
DELETED = "deleted"
ALREADY_GONE = "already_gone"
REFUSED = "refused"


def final_outcome(job: Mapping) -> str:
    """How a DONE job ended: cancelled, succeeded or failed."""
    if is_cancelled(job):
        return CANCELLED
    return FAILED if error_result(job) else SUCCEEDED


def cancel_entry(ref: JobRef, job: Mapping | None) -> dict[str, Any]:
    """The cancel result for one job, from the job as last read (``None``: it does not exist)."""
    if job is None:
        outcome = NOT_FOUND
    elif job_state(job) == "DONE":
        outcome = final_outcome(job)
    else:
        outcome = CANCEL_PENDING
    return {
        "job": ref.to_api(),
        "outcome": outcome,
        "state": job_state(job) if job is not None else None,
        "error_result": error_result(job) if job is not None else None,
    }


def delete_entry(ref: JobRef, outcome: str, *, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    return {"job": ref.to_api(), "outcome": outcome, "reason": reason, "message": message}
