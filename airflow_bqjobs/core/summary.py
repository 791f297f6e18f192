"""Compact, JSON-serialisable job summaries for XCom and logs.

A query's full statistics can hold a query plan of megabytes; XCom gets the scalar figures only.
"""

from __future__ import annotations

from typing import Any, Mapping

from airflow_bqjobs.core.decision import error_result, job_state
from airflow_bqjobs.core.job_config import JOB_TYPES


def _scalars(mapping: Mapping) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if isinstance(v, (str, int, float, bool)) or v is None}


def summarize_job(job: Mapping) -> dict[str, Any]:
    ref = job.get("jobReference") or {}
    config = job.get("configuration") or {}
    statistics = job.get("statistics") or {}
    kind = next((t for t in JOB_TYPES if t in config), (config.get("jobType") or "unknown").lower())
    stats = _scalars(statistics)
    if isinstance(statistics.get(kind), Mapping):
        stats[kind] = _scalars(statistics[kind])
    status = job.get("status") or {}
    return {
        "job_id": ref.get("jobId"),
        "project_id": ref.get("projectId"),
        "location": ref.get("location"),
        "job_type": kind,
        "state": job_state(job),
        "error_result": error_result(job),
        "errors": list(status.get("errors") or []),
        "labels": dict(config.get("labels") or {}),
        "statistics": stats,
    }
