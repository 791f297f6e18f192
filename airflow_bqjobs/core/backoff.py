"""Delay schedules, one place for both: polling a job and backing off from transient errors."""

from __future__ import annotations

import random
from typing import Iterator

from airflow_bqjobs.core.errors import InvalidJobInput


def validate_interval(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidJobInput(field, f"must be a positive number of seconds, got {value!r}")
    return float(value)


def poll_intervals(max_interval: float, first: float = 1.0, factor: float = 1.5) -> Iterator[float]:
    """1 s, 1.5 s, 2.25 s, ... capped at ``max_interval``: short jobs finish fast, long ones cost few calls."""
    interval = min(first, max_interval)
    while True:
        yield interval
        interval = min(interval * factor, max_interval)


def backoff_delays(
    initial: float = 1.0, maximum: float = 60.0, multiplier: float = 2.0, rng: random.Random | None = None
) -> Iterator[float]:
    """Truncated exponential backoff with full jitter (what Google advises for 429 / 5xx)."""
    rng = rng or random.Random()
    ceiling = initial
    while True:
        yield rng.uniform(ceiling / 2, ceiling)
        ceiling = min(ceiling * multiplier, maximum)
