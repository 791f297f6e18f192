"""A record of every BigQuery API call the fake answered (or dropped).

Reliability tests assert on traffic, not just on outcomes: how many inserts
were sent for one id, which calls met a fault, what status each got.
"""

from __future__ import annotations

import threading
import time
from collections import Counter


class CallLog:
    def __init__(self):
        self._lock = threading.Lock()
        self._calls: list[dict] = []
        self._by_endpoint: Counter = Counter()

    def record(self, *, endpoint: str, method: str, path: str, project: str | None,
               job_id: str | None, status: int | None, fault: str | None,
               reason: str | None = None, acted_status: int | None = None,
               query: dict | None = None, listed: list[str] | None = None) -> None:
        """status None means no answer was sent (connection reset).

        acted_status is what the server produced (None if it did not act),
        which differs from status when the answer was lost or replaced.
        """
        with self._lock:
            self._calls.append({
                "seq": len(self._calls) + 1,
                "time": time.time(),
                "endpoint": endpoint,
                "method": method,
                "path": path,
                "project": project,
                "job_id": job_id,
                "status": status,
                "reason": reason,
                "acted_status": acted_status,
                "fault": fault,
                "query": query or {},  # the request's query parameters: {name: [values]}
                "listed": listed or [],  # jobs.list: the job IDs this answer showed
            })
            self._by_endpoint[endpoint] += 1

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()
            self._by_endpoint.clear()

    def calls(self) -> list[dict]:
        with self._lock:
            return [dict(c) for c in self._calls]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_endpoint)
