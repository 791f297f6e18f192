"""One stored job and its timeline.

The timeline (start, end, final error) is fixed at insert and only shortened
by a cancel or a jobTimeoutMs; the state at any moment is derived from the
clock, so reads never mutate and no background thread is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .behaviour import STOPPED_BY_USER, Behaviour

PENDING, RUNNING, DONE = "PENDING", "RUNNING", "DONE"


@dataclass
class Job:
    project: str
    job_id: str
    location: str
    job_type: str                      # QUERY / LOAD / COPY / EXTRACT
    configuration: dict                # as sent, plus jobType
    behaviour: Behaviour
    user_email: str
    created_at: float                  # epoch seconds on the fake clock
    start_at: float
    end_at: float                      # natural end (before any cancel)
    final_error: dict | None           # errorResult at the natural end
    seq: int = 0                       # insertion order, tie-break for listing
    parent_job_id: str | None = None
    child_job_ids: list[str] = field(default_factory=list)
    statement_index: int | None = None  # position in the parent script
    cancel_requested_at: float | None = None
    cancel_done_at: float | None = None
    upload_bytes: bytes | None = None

    # -- timeline ----------------------------------------------------------
    def effective_end(self) -> tuple[float, dict | None]:
        """When the job is DONE and with which errorResult, cancels included."""
        if self.cancel_done_at is not None and self.cancel_done_at < self.end_at:
            return self.cancel_done_at, dict(STOPPED_BY_USER)
        return self.end_at, self.final_error

    def state_at(self, now: float) -> str:
        end, _ = self.effective_end()
        if now >= end:
            return DONE
        if now >= self.start_at:
            return RUNNING
        return PENDING

    def visible_at(self, now: float) -> bool:
        # Script children come into existence when their statement starts.
        return now >= self.created_at

    def request_cancel(self, now: float) -> bool:
        """Record a cancel; True if it changes anything (job not DONE yet)."""
        if self.state_at(now) == DONE or self.cancel_requested_at is not None:
            return False
        self.cancel_requested_at = now
        self.cancel_done_at = now + self.behaviour.cancel_s
        return True

    @property
    def labels(self) -> dict:
        return dict(self.configuration.get("labels") or {})

    @property
    def query_text(self) -> str | None:
        return (self.configuration.get("query") or {}).get("query")
