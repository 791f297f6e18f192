"""Injected transport and API failures, per endpoint, by count or by rate.

Exactly-once submission is only proven by tests where the network lies:
answers lost after the server acted, errors before it acted, answers that
arrive too late, and the 404 that may follow a 409.
"""

from __future__ import annotations

import itertools
import random
import re
import threading
from collections import Counter
from dataclasses import asdict, dataclass

from .api_errors import ApiError

# Answered instead of acting (the server does nothing).
STATUS_KINDS = ("429", "403", "500", "503")
# Transport-level.
RESET_BEFORE, RESET_AFTER, DELAY = "reset_before", "reset_after", "delay"
# After a 409 duplicate for job X, the next jobs.get of X answers 404 once.
NOT_FOUND_AFTER_CONFLICT = "404_after_409"
FAULT_KINDS = STATUS_KINDS + (RESET_BEFORE, RESET_AFTER, DELAY, NOT_FOUND_AFTER_CONFLICT)

ENDPOINTS = ("insert", "get", "cancel", "delete", "list", "upload", "upload_chunk", "query_results")
ANY = "any"


@dataclass
class Fault:
    """One injection spec.

    kind: one of FAULT_KINDS. endpoint: one of ENDPOINTS or "any".
    count: fire on the next N matching calls. rate: probability per matching
    call (seeded RNG). Both: random, at most N times. Neither: every call.
    delay_s: for "delay", seconds slept after acting, before answering.
    job_id: optional regex; only calls about a matching job id.
    """

    kind: str
    endpoint: str = ANY
    count: int | None = None
    rate: float | None = None
    delay_s: float = 1.0
    job_id: str | None = None
    id: int = 0
    fired: int = 0

    def __post_init__(self):
        self.kind = str(self.kind)
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {FAULT_KINDS}")
        if self.endpoint != ANY and self.endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {self.endpoint!r}; known: {ENDPOINTS + (ANY,)}")
        if self.kind == NOT_FOUND_AFTER_CONFLICT and self.endpoint not in (ANY, "insert", "upload"):
            raise ValueError("404_after_409 applies to the insert or upload endpoint")
        if self.rate is not None and not 0.0 <= float(self.rate) <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        if self.count is not None and int(self.count) < 0:
            raise ValueError("count must be >= 0")
        if self.job_id is not None:
            re.compile(self.job_id)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> "Fault":
        known = {"kind", "endpoint", "count", "rate", "delay_s", "job_id"}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown fault field(s): {sorted(unknown)}; known: {sorted(known)}")
        return cls(**raw)


def status_fault_error(kind: str) -> ApiError:
    """The error answered for a status fault, in BigQuery's words."""
    if kind in ("429", "403"):
        return ApiError(int(kind), "rateLimitExceeded",
                        "Exceeded rate limits: too many api requests per user per method for this "
                        "user_method. (fakebq injected)")
    if kind == "500":
        return ApiError(500, "backendError", "Backend error. (fakebq injected)")
    return ApiError(503, "backendError", "The service is currently unavailable. (fakebq injected)")


class FaultInjector:
    def __init__(self, seed: int = 0):
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self._seed = seed
        self._rng = random.Random(seed)
        self._counts: Counter = Counter()

    def add(self, fault: Fault) -> int:
        with self._lock:
            fault.id = next(self._ids)
            self._faults.append(fault)
            return fault.id

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) != before

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self, seed: int | None = None) -> None:
        """Drop all faults and counters and re-seed the RNG."""
        with self._lock:
            self._faults.clear()
            self._counts.clear()
            if seed is not None:
                self._seed = seed
            self._rng = random.Random(self._seed)

    def set_seed(self, seed: int) -> None:
        with self._lock:
            self._seed = seed
            self._rng = random.Random(seed)

    def pick(self, endpoint: str, job_id: str | None, kinds: tuple[str, ...]) -> Fault | None:
        """The fault to inject into this call (counted), or None."""
        with self._lock:
            for fault in self._faults:
                if fault.kind not in kinds:
                    continue
                if fault.endpoint != ANY and fault.endpoint != endpoint:
                    continue
                if fault.job_id is not None and not re.search(fault.job_id, job_id or ""):
                    continue
                if fault.count is not None and fault.fired >= fault.count:
                    continue
                if fault.rate is not None and self._rng.random() >= fault.rate:
                    continue
                fault.fired += 1
                self._counts[fault.kind] += 1
                self._counts[f"{endpoint}:{fault.kind}"] += 1
                return fault
            return None

    def counts(self) -> dict[str, int]:
        """Injected faults by kind ("503") and by endpoint and kind ("insert:503")."""
        with self._lock:
            return dict(self._counts)

    def snapshot(self) -> list[dict]:
        with self._lock:
            return [f.to_dict() for f in self._faults]
