"""Retrying one request under the transient rule: backoff, a deadline, and a log line per retry.

The hook's only retry loop (the trigger runs its own poll loop and passes ``retry=None``). Every
transient failure is logged with its reason and the next delay, so an unreachable endpoint is never
a silent wait; the loop stops at ``deadline`` (seconds, counted from the first call) and then raises
:class:`RetryDeadlineExceeded` naming the last error and how to change the limit.
"""

from __future__ import annotations

import time
from typing import Callable, Iterator, TypeVar

from airflow_bqjobs.core.backoff import backoff_delays
from airflow_bqjobs.core.transient import error_reason, is_transient

T = TypeVar("T")


class RetryDeadlineExceeded(Exception):
    """Transient errors went on until the retry deadline passed."""


class EmulatorUnreachable(Exception):
    """An explicitly configured emulator endpoint refuses connections: retrying cannot help."""


def is_connection_refused(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps: requests / urllib3 chains) is a refused TCP connection."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ConnectionRefusedError) or "Connection refused" in str(item):
            return True
        todo.extend([item.__cause__, item.__context__, getattr(item, "reason", None), *item.args])
    return False


def describe_error(exc: BaseException) -> str:
    """``HTTP 503 backendError: ...`` / ``ConnectionError: ...``, short enough for one log line."""
    code = getattr(exc, "code", None)
    reason = error_reason(exc)
    head = " ".join(str(part) for part in (f"HTTP {code}" if code else None, reason) if part)
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{head or type(exc).__name__}: {text}" if text else (head or type(exc).__name__)


def call_with_retry(
    call: Callable[[], T],
    *,
    deadline: float,
    what: str = "request",
    limit: str = "retry_deadline",
    transient: Callable[[BaseException], bool] = is_transient,
    delays: Iterator[float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    log: Callable[[str], None] = lambda msg: None,
) -> T:
    """``call()``, retried on transient errors with jittered exponential backoff until ``deadline`` s."""
    delays = delays if delays is not None else backoff_delays(initial=1.0, maximum=32.0)
    start = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except Exception as exc:
            if not transient(exc):
                raise
            left = deadline - (clock() - start)
            if left <= 0:
                raise RetryDeadlineExceeded(
                    f"{what} still failing after {attempt} tries over {deadline:.0f} s ({limit});"
                    f" last error: {describe_error(exc)}"
                ) from exc
            delay = min(next(delays), left)
            log(
                f"Transient error on {what} (try {attempt}): {describe_error(exc)}; retrying in {delay:.1f} s"
                f" ({left:.0f} s left of {limit})"
            )
            sleep(delay)
