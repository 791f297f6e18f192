"""What a fake job does once inserted: how long it waits, runs, and how it ends.

One dataclass, filled from three layers (server defaults, then the in-band
directive in the query text, then the first matching server-side rule), so a
test and a DAG file describe outcomes in the same vocabulary.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

# Default messages for error reasons given without one.
_DEFAULT_MESSAGES = {
    "invalid": "Invalid query",
    "invalidQuery": "Syntax error: fakebq",
    "jobBackendError": "The job encountered an internal error during execution and was unable to complete successfully.",
    "jobInternalError": "The job encountered an internal error during execution and was unable to complete successfully.",
    "jobRateLimitExceeded": "Job exceeded rate limits",
    "stopped": "Job execution was cancelled: User requested cancellation",
    "quotaExceeded": "Quota exceeded",
    "accessDenied": "Access Denied",
    "notFound": "Not found: Table",
}

STOPPED_BY_USER = {"reason": "stopped", "message": "Job execution was cancelled: User requested cancellation"}


@dataclass(frozen=True)
class Behaviour:
    """How one job behaves. All durations are seconds on the fake's clock.

    pending_s, running_s: time spent PENDING, then RUNNING, before DONE.
    error: None for success, else ``{"reason": ..., "message": ...}`` (a bare
        reason string is accepted) - becomes ``status.errorResult``.
    errors: non-fatal errors listed in ``status.errors`` (with or without error).
    total_bytes_processed: reported in query statistics once DONE.
    statistics: deep-merged into ``statistics`` once DONE.
    cancel_s: delay between a cancel request and the job being DONE/stopped.
    user_email: owner; another user's jobs are hidden from jobs.list
        unless ``allUsers``. None means the server's own user.
    location: where the job's data lives, i.e. where a jobs.insert without
        ``jobReference.location`` runs it (BigQuery's rule). None means US.
    """

    pending_s: float = 0.05
    running_s: float = 0.3
    error: dict | None = None
    errors: tuple = ()
    total_bytes_processed: int = 0
    statistics: dict = field(default_factory=dict)
    cancel_s: float = 0.2
    user_email: str | None = None
    location: str | None = None

    def __post_init__(self):
        # Accept the same loose forms as the JSON layers (e.g. error="invalid").
        for key, value in normalise_fields(
            {"error": self.error, "errors": self.errors, "pending_s": self.pending_s,
             "running_s": self.running_s, "cancel_s": self.cancel_s}
        ).items():
            object.__setattr__(self, key, value)

    def merged(self, overrides: dict | None) -> "Behaviour":
        """A copy with ``overrides`` (a partial field dict) applied."""
        if not overrides:
            return self
        return dataclasses.replace(self, **normalise_fields(overrides))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["errors"] = list(self.errors)
        return d


FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Behaviour))


def normalise_fields(raw: dict) -> dict:
    """Validate a partial behaviour dict; raise ValueError on anything unknown."""
    unknown = set(raw) - FIELD_NAMES
    if unknown:
        raise ValueError(f"unknown behaviour field(s): {sorted(unknown)}; known: {sorted(FIELD_NAMES)}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("pending_s", "running_s", "cancel_s"):
            value = float(value)
            if value < 0:
                raise ValueError(f"{key} must be >= 0")
        elif key == "error":
            value = _normalise_error(value)
        elif key == "errors":
            value = tuple(_normalise_error(e) for e in (value or ()))
        elif key == "total_bytes_processed":
            value = int(value)
        elif key == "statistics":
            if not isinstance(value, dict):
                raise ValueError("statistics must be an object")
        elif key in ("user_email", "location") and value is not None:
            value = str(value)
        out[key] = value
    return out


def _normalise_error(value: Any) -> dict | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = {"reason": value}
    if not isinstance(value, dict) or not value.get("reason"):
        raise ValueError(f"an error needs a reason: {value!r}")
    out = {"reason": str(value["reason"])}
    out["message"] = str(value.get("message") or _DEFAULT_MESSAGES.get(out["reason"], out["reason"]))
    if value.get("location"):
        out["location"] = str(value["location"])
    return out


# /* fakebq: {...} */ anywhere in the query text.
_DIRECTIVE_RE = re.compile(r"/\*\s*fakebq:\s*(\{.*?\})\s*\*/", re.DOTALL)


def parse_directive(query_text: str | None) -> dict | None:
    """The behaviour overrides written in the query, or None if there are none.

    Raises ValueError for a malformed directive, so a typo in a DAG fails loudly.
    """
    if not query_text:
        return None
    match = _DIRECTIVE_RE.search(query_text)
    if match is None:
        return None
    try:
        raw = json.loads(match.group(1))
    except json.JSONDecodeError as exc:
        raise ValueError(f"fakebq directive is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError("fakebq directive must be a JSON object")
    return normalise_fields(raw)
