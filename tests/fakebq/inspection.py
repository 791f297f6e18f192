"""Assertion helpers over job and call snapshots, shared by the in-process
and the remote handle (both expose ``jobs`` and ``calls`` as lists of dicts).
"""

from __future__ import annotations

_UNFINISHED = ("PENDING", "RUNNING")


class InspectionHelpers:
    jobs: list[dict]
    calls: list[dict]

    def job(self, job_id: str, project: str | None = None) -> dict | None:
        """Snapshot of one job, or None if it does not exist (or was deleted)."""
        for job in self.jobs:
            if job["job_id"] == job_id and (project is None or job["project"] == project):
                return job
        return None

    def jobs_with_prefix(self, prefix: str = "", *, top_level: bool = True) -> list[dict]:
        """Jobs whose id starts with ``prefix`` (script children excluded by default)."""
        return [j for j in self.jobs if j["job_id"].startswith(prefix)
                and (not top_level or j["parent_job_id"] is None)]

    def count_jobs(self, prefix: str = "") -> int:
        return len(self.jobs_with_prefix(prefix))

    def unfinished_jobs(self, prefix: str = "") -> list[dict]:
        """Jobs still PENDING or RUNNING - e.g. left behind by a killed task."""
        return [j for j in self.jobs_with_prefix(prefix, top_level=False) if j["state"] in _UNFINISHED]

    def running_jobs(self, prefix: str = "") -> list[dict]:
        return [j for j in self.jobs_with_prefix(prefix, top_level=False) if j["state"] == "RUNNING"]

    def calls_for(self, endpoint: str | None = None, *, job_id: str | None = None,
                  method: str | None = None, status: int | None = None,
                  fault: str | None = None) -> list[dict]:
        """Recorded API calls, filtered by any of the given fields."""
        out = []
        for call in self.calls:
            if endpoint is not None and call["endpoint"] != endpoint:
                continue
            if job_id is not None and call["job_id"] != job_id:
                continue
            if method is not None and call["method"] != method:
                continue
            if status is not None and call["status"] != status:
                continue
            if fault is not None and call["fault"] != fault:
                continue
            out.append(call)
        return out

    def count_calls(self, endpoint: str | None = None, **filters) -> int:
        return len(self.calls_for(endpoint, **filters))
