"""What BigQuery reports about a job while it runs, as log lines that do not flood the log.

Pure: give :class:`ProgressReporter` each job resource you read (``jobs.get``) and log what it
returns. While the job is PENDING or RUNNING, :meth:`ProgressReporter.update` returns one line at
most every ``interval`` seconds (the first read gives one at once), e.g.::

    Job p:US.j RUNNING for 2 min 5 s: 1.2 GiB processed, 345,678 slot-ms, 3/7 stages done

with whatever the job's statistics hold (elapsed time, bytes processed, slot-milliseconds,
completed stages of the query plan, rows loaded / copied). Once the job is DONE it returns the final
line, once (:func:`final_line`: duration, bytes billed, cache hit). Used by the operators' sync
wait (``operators/_waiting.py``), the sensor's pokes and the trigger's poll loop, which logs only
the progress lines: the task logs the final line itself when it resumes (else it would appear
twice in the task log). A poller that serves many jobs keeps one reporter per job::

    reporter = ProgressReporter(str(ref))
    for job in reads:
        line = reporter.update(job)
        if line and job_state(job) != "DONE":  # a trigger: the resumed task logs the final line
            log.info(line)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Callable

DEFAULT_INTERVAL = 60.0
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


class ProgressReporter:
    """Rate-limited progress lines for one job (see the module docstring).

    :param name: how the lines name the job (``str(JobRef)``: ``project:LOCATION.job_id``).
    :param interval: at least this many seconds between two progress lines.
    :param clock: epoch seconds (injected in tests); also the "now" of the elapsed time.
    """

    def __init__(self, name: str, interval: float = DEFAULT_INTERVAL, clock: Callable[[], float] = time.time):
        self.name = name
        self.interval = float(interval)
        self.clock = clock
        self._last_at: float | None = None
        self._finished = False

    def update(self, job: Mapping) -> str | None:
        """The line to log for this read of ``job``, or ``None`` when none is due."""
        if _state(job) == "DONE":
            if self._finished:
                return None
            self._finished = True
            return final_line(self.name, job)
        now = self.clock()
        if self._last_at is not None and now - self._last_at < self.interval:
            return None
        self._last_at = now
        return progress_line(self.name, job, now)


def progress_line(name: str, job: Mapping, now: float) -> str:
    """``Job NAME STATE for ELAPSED: figures`` for a PENDING or RUNNING job, ``now`` in epoch seconds."""
    stats = _stats(job)
    state = _state(job)
    since = _ms(stats.get("startTime")) if state == "RUNNING" else None
    since = since if since is not None else _ms(stats.get("creationTime"))
    head = f"Job {name} {state}"
    if since is not None:
        head += f" for {format_duration(max(0.0, now - since / 1000))}"
    figures = _running_figures(stats)
    return f"{head}: {', '.join(figures)}" if figures else head


def final_line(name: str, job: Mapping) -> str:
    """``Job NAME DONE|failed in DURATION: bytes billed, cache hit...`` for a DONE job."""
    stats = _stats(job)
    error = (job.get("status") or {}).get("errorResult")
    outcome = f"failed [{error.get('reason')}]" if error else "DONE"
    start = _ms(stats.get("startTime"))
    start = start if start is not None else _ms(stats.get("creationTime"))
    end = _ms(stats.get("endTime"))
    head = f"Job {name} {outcome}"
    if start is not None and end is not None:
        head += f" in {format_duration(max(0, end - start) / 1000)}"
    query = stats.get("query") if isinstance(stats.get("query"), Mapping) else {}
    figures = []
    billed = _int(query.get("totalBytesBilled"))
    if billed is not None:
        figures.append(f"{format_bytes(billed)} billed")
    processed = _int(query.get("totalBytesProcessed", stats.get("totalBytesProcessed")))
    if processed is not None:
        figures.append(f"{format_bytes(processed)} processed")
    if "cacheHit" in query:
        figures.append(f"cache hit: {'yes' if query.get('cacheHit') else 'no'}")
    slot_ms = _int(query.get("totalSlotMs", stats.get("totalSlotMs")))
    if slot_ms:
        figures.append(f"{slot_ms:,} slot-ms")
    figures += _row_figures(stats)
    return f"{head}: {', '.join(figures)}" if figures else head


def format_duration(seconds: float) -> str:
    """``0.4 s``, ``12 s``, ``2 min 5 s``, ``1 h 3 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def format_bytes(count: int) -> str:
    """``512 B``, ``1.5 KiB``, ``3.2 GiB``."""
    value = float(count)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# -- reading the statistics ----------------------------------------------------------------------


def _running_figures(stats: Mapping) -> list[str]:
    query = stats.get("query") if isinstance(stats.get("query"), Mapping) else {}
    figures = []
    processed = _int(query.get("totalBytesProcessed", stats.get("totalBytesProcessed")))
    if processed is not None:
        figures.append(f"{format_bytes(processed)} processed")
    slot_ms = _int(query.get("totalSlotMs", stats.get("totalSlotMs")))
    timeline = query.get("timeline")
    if slot_ms is None and isinstance(timeline, list) and timeline and isinstance(timeline[-1], Mapping):
        slot_ms = _int(timeline[-1].get("totalSlotMs"))
    if slot_ms is not None:
        figures.append(f"{slot_ms:,} slot-ms")
    plan = query.get("queryPlan")
    if isinstance(plan, list) and plan:
        done = sum(1 for stage in plan if isinstance(stage, Mapping) and stage.get("status") == "COMPLETE")
        figures.append(f"{done}/{len(plan)} stages done")
    figures += _row_figures(stats)
    return figures


def _row_figures(stats: Mapping) -> list[str]:
    figures = []
    load = stats.get("load") if isinstance(stats.get("load"), Mapping) else {}
    rows = _int(load.get("outputRows"))
    if rows is not None:
        figures.append(f"{rows:,} rows loaded")
    copy = stats.get("copy") if isinstance(stats.get("copy"), Mapping) else {}
    copied = _int(copy.get("copiedRows"))
    if copied is not None:
        figures.append(f"{copied:,} rows copied")
    return figures


def _state(job: Mapping) -> str:
    return (job.get("status") or {}).get("state", "PENDING")


def _stats(job: Mapping) -> Mapping:
    stats = job.get("statistics")
    return stats if isinstance(stats, Mapping) else {}


def _int(value: Any) -> int | None:
    """BigQuery sends int64 figures as strings."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _ms(value: Any) -> int | None:
    return _int(value)
