"""Render a stored job as the JSON BigQuery returns (jobs.get and jobs.list).

Kept apart from the model so the wire shape can be compared with the real
API in one place.
"""

from __future__ import annotations

import copy
import hashlib

from .api_errors import job_name
from .job_model import DONE, PENDING, RUNNING, Job

# A running query's plan, as BigQuery reports it while it works: stages complete one after another.
_STAGES = ("S00: Input", "S01: Aggregate", "S02: Output")
_SLOTS = 4  # slots the fake pretends to use, for totalSlotMs


def _ms(epoch_s: float) -> str:
    return str(int(epoch_s * 1000))


def _deep_merge(into: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def job_status(job: Job, now: float) -> dict:
    state = job.state_at(now)
    status: dict = {"state": state}
    if state == DONE:
        _, error = job.effective_end()
        errors = [dict(e) for e in job.behaviour.errors]
        if error is not None:
            status["errorResult"] = dict(error)
            errors = [dict(error)] + errors
        if errors:
            status["errors"] = errors
    return status


def job_statistics(job: Job, now: float, num_children: int) -> dict:
    state = job.state_at(now)
    end, _ = job.effective_end()
    stats: dict = {"creationTime": _ms(job.created_at)}
    if state != PENDING and job.start_at <= end:
        stats["startTime"] = _ms(job.start_at)
    if job.parent_job_id is not None:
        stats["parentJobId"] = job.parent_job_id
        stats["scriptStatistics"] = {"evaluationKind": "STATEMENT", "stackFrames": []}
    if job.child_job_ids:
        stats["numChildJobs"] = str(num_children)
    if job.upload_bytes is not None:
        stats["load"] = {"inputFiles": "1", "inputFileBytes": str(len(job.upload_bytes))}
    if state != DONE:
        if state == RUNNING and job.job_type == "QUERY" and not job.child_job_ids:
            stats["query"] = query_progress(job, now, end)
            stats["totalSlotMs"] = stats["query"]["totalSlotMs"]
        return stats
    stats["endTime"] = _ms(end)
    if job.job_type == "QUERY":
        processed = str(job.behaviour.total_bytes_processed)
        stats["totalBytesProcessed"] = processed
        stats["query"] = {
            "totalBytesProcessed": processed,
            "totalBytesBilled": processed,
            "cacheHit": False,
            "statementType": "SCRIPT" if job.child_job_ids else "SELECT",
        }
        if not job.child_job_ids:
            progress = query_progress(job, end, end)
            stats["totalSlotMs"] = progress["totalSlotMs"]
            stats["query"].update(totalSlotMs=progress["totalSlotMs"], queryPlan=progress["queryPlan"],
                                  timeline=progress["timeline"])
    elif job.job_type == "LOAD":
        stats.setdefault("load", {}).update({"outputRows": "0", "outputBytes": "0"})
    _deep_merge(stats, job.behaviour.statistics)
    return stats


def query_progress(job: Job, now: float, end: float) -> dict:
    """``statistics.query`` of a running query (and the final plan at ``now == end``), as BigQuery
    reports them while a query runs: ``totalSlotMs``, a ``queryPlan`` whose stages complete in turn,
    and a ``timeline`` of work units. ``totalBytesProcessed`` only comes with DONE."""
    span = max(end - job.start_at, 1e-9)
    elapsed = min(max(now - job.start_at, 0.0), span)
    fraction = elapsed / span
    done_stages = len(_STAGES) if now >= end else min(int(fraction * len(_STAGES)), len(_STAGES) - 1)
    plan = [
        {
            "name": name,
            "id": str(index),
            "status": "COMPLETE" if index < done_stages else ("RUNNING" if index == done_stages else "PENDING"),
            "completedParallelInputs": "1" if index < done_stages else "0",
            "parallelInputs": "1",
        }
        for index, name in enumerate(_STAGES)
    ]
    slot_ms = str(int(elapsed * 1000 * _SLOTS))
    units = 100
    completed = units if now >= end else int(fraction * units)
    timeline = [{"elapsedMs": str(int(elapsed * 1000)), "totalSlotMs": slot_ms, "pendingUnits": str(units - completed),
                 "completedUnits": str(completed), "activeUnits": "0" if now >= end else "1"}]
    return {"totalSlotMs": slot_ms, "queryPlan": plan, "timeline": timeline}
def job_configuration(job: Job) -> dict:
    """The configuration as BigQuery reports it: a query (not a script) that named no destination
    writes to an anonymous result table, ``anon...`` in a hidden dataset ``_...``, which BigQuery
    fills in as ``destinationTable``."""
    configuration = copy.deepcopy(job.configuration)
    query = configuration.get("query")
    if job.job_type == "QUERY" and isinstance(query, dict) and not query.get("destinationTable") \
            and not job.child_job_ids:
        digest = hashlib.sha1(job_name(job.project, job.location, job.job_id).encode()).hexdigest()
        query["destinationTable"] = {"projectId": job.project, "datasetId": f"_{digest[:40]}",
                                     "tableId": f"anon{digest[::-1][:40]}"}
    return configuration


def job_resource(job: Job, now: float, base_url: str, num_children: int = 0) -> dict:
    """The full ``bigquery#job`` resource (jobs.get, jobs.insert answers)."""
    name = job_name(job.project, job.location, job.job_id)
    return {
        "kind": "bigquery#job",
        "etag": hashlib.md5(f"{name}/{job.state_at(now)}".encode()).hexdigest()[:16],
        "id": name,
        "selfLink": f"{base_url}/bigquery/v2/projects/{job.project}/jobs/{job.job_id}?location={job.location}",
        "user_email": job.user_email,
        "principal_subject": f"user:{job.user_email}",
        "configuration": job_configuration(job),
        "jobReference": {"projectId": job.project, "jobId": job.job_id, "location": job.location},
        "statistics": job_statistics(job, now, num_children),
        "status": job_status(job, now),
        "jobCreationReason": {"code": "REQUESTED"},
    }


def list_entry(job: Job, now: float, num_children: int, full: bool) -> dict:
    """One ``jobs[]`` item of jobs.list (projection full/minimal)."""
    status = job_status(job, now)
    entry = {
        "id": job_name(job.project, job.location, job.job_id),
        "kind": "bigquery#job",
        "jobReference": {"projectId": job.project, "jobId": job.job_id, "location": job.location},
        "state": status["state"],
        "statistics": job_statistics(job, now, num_children),
        "status": status,
        "user_email": job.user_email,
        "principal_subject": f"user:{job.user_email}",
    }
    if "errorResult" in status:
        entry["errorResult"] = dict(status["errorResult"])
    if full:
        entry["configuration"] = job_configuration(job)
    return entry


def job_snapshot(job: Job, now: float, base_url: str, child_job_ids: list[str]) -> dict:
    """A flat, JSON-ready view for test assertions (plus the full resource)."""
    end, error = job.effective_end()
    state = job.state_at(now)
    return {
        "project": job.project,
        "job_id": job.job_id,
        "location": job.location,
        "job_type": job.job_type,
        "state": state,
        "error_result": error if state == DONE else None,
        "user_email": job.user_email,
        "labels": job.labels,
        "query": job.query_text,
        "parent_job_id": job.parent_job_id,
        "child_job_ids": list(child_job_ids),
        "created_at": job.created_at,
        "start_at": job.start_at,
        "end_at": end,
        "cancel_requested": job.cancel_requested_at is not None,
        "upload_bytes": None if job.upload_bytes is None else len(job.upload_bytes),
        "resource": job_resource(job, now, base_url, len(child_job_ids)),
    }
