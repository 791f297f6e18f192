"""Server-side behaviour rules: "jobs like this behave like that".

Tests set rules instead of editing SQL; ``times`` lets a rule apply only to
the next N matching jobs, which expresses "fail once, then succeed".
"""

from __future__ import annotations

import itertools
import re
import threading
from dataclasses import dataclass, field

from .behaviour import normalise_fields

JOB_TYPES = ("QUERY", "LOAD", "COPY", "EXTRACT")


@dataclass
class Rule:
    """Match criteria (all given ones must hold) plus behaviour overrides.

    job_id / query: regexes searched (``re.search``) in the job id / query text.
    job_type: QUERY, LOAD, COPY or EXTRACT. labels: all given pairs present.
    times: apply to the next N matching jobs only (None = forever).
    behaviour: partial field dict; overrides defaults and directives.
    """

    job_id: str | None = None
    job_type: str | None = None
    labels: dict | None = None
    query: str | None = None
    times: int | None = None
    behaviour: dict = field(default_factory=dict)
    id: int = 0
    matched: int = 0

    def __post_init__(self):
        if self.job_type is not None:
            self.job_type = self.job_type.upper()
            if self.job_type not in JOB_TYPES:
                raise ValueError(f"job_type must be one of {JOB_TYPES}")
        for pattern in (self.job_id, self.query):
            if pattern is not None:
                re.compile(pattern)
        if self.times is not None and int(self.times) < 0:
            raise ValueError("times must be >= 0")
        self.behaviour = normalise_fields(self.behaviour or {})

    def matches(self, job_id: str, job_type: str, labels: dict, query: str | None) -> bool:
        if self.times is not None and self.matched >= self.times:
            return False
        if self.job_id is not None and not re.search(self.job_id, job_id):
            return False
        if self.job_type is not None and self.job_type != job_type:
            return False
        if self.labels and any(labels.get(k) != v for k, v in self.labels.items()):
            return False
        if self.query is not None and not re.search(self.query, query or ""):
            return False
        return True

    def to_dict(self) -> dict:
        return {
            "id": self.id, "job_id": self.job_id, "job_type": self.job_type, "labels": self.labels,
            "query": self.query, "times": self.times, "matched": self.matched,
            "behaviour": _jsonable(self.behaviour),
        }

    @classmethod
    def from_dict(cls, raw: dict) -> "Rule":
        known = {"job_id", "job_type", "labels", "query", "times", "behaviour"}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown rule field(s): {sorted(unknown)}; known: {sorted(known)}")
        return cls(**raw)


def _jsonable(overrides: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items()}


class RuleBook:
    """Ordered rules; the first match wins and is counted."""

    def __init__(self):
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._ids = itertools.count(1)

    def add(self, rule: Rule) -> int:
        with self._lock:
            rule.id = next(self._ids)
            self._rules.append(rule)
            return rule.id

    def remove(self, rule_id: int) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def consume_match(self, job_id: str, job_type: str, labels: dict, query: str | None) -> dict | None:
        """Overrides of the first matching rule (counting the use), else None."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(job_id, job_type, labels, query):
                    rule.matched += 1
                    return rule.behaviour
        return None

    def snapshot(self) -> list[dict]:
        with self._lock:
            return [r.to_dict() for r in self._rules]
