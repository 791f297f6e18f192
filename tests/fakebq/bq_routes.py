"""The BigQuery REST v2 endpoints the fake serves, as request -> response
functions over FakeState.

Each route has an endpoint name (used by fault injection and the call log)
and a way to tell, before acting, which job id a call is about.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from dataclasses import dataclass
from typing import Callable

from .api_errors import ApiError, duplicate, invalid, not_found
from .http_messages import Request, Response
from .job_model import DONE
from .job_resource import list_entry
from .state import FakeState
from .uploads import parse_content_range, parse_multipart_related
from .validation import check_job_id, job_type_of

_P = r"(?P<project>[^/]+)"
_J = r"(?P<job_id>[^/]+)"
_V2 = "/bigquery/v2/projects/" + _P
_UPLOAD = "/upload/bigquery/v2/projects/" + _P + "/jobs"

DEFAULT_QUERY_RESULTS_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern
    endpoint: str
    handler: Callable[..., Response]


def _job_location(req: Request) -> str | None:
    return req.param("location") or None


# -- jobs.insert ---------------------------------------------------------------
def insert_job(state: FakeState, req: Request, project: str) -> Response:
    job, _ = state.store.insert(project, req.json(), user_email=state.user_email,
                                resolve=state.resolve_behaviour)
    return Response.json(200, state.render(job, state.clock.now(), req.base_url))


# -- jobs.get ------------------------------------------------------------------
def get_job(state: FakeState, req: Request, project: str, job_id: str) -> Response:
    if state.store.take_not_found_once(project, job_id):
        return Response.error(not_found(project, _job_location(req), job_id), fault="404_after_409")
    job, now = state.store.get(project, job_id, _job_location(req))
    return Response.json(200, state.render(job, now, req.base_url))


# -- jobs.cancel ---------------------------------------------------------------
def cancel_job(state: FakeState, req: Request, project: str, job_id: str) -> Response:
    job, now = state.store.cancel(project, job_id, _job_location(req))
    return Response.json(200, {"kind": "bigquery#jobCancelResponse",
                               "job": state.render(job, now, req.base_url)})


# -- jobs.delete ---------------------------------------------------------------
def delete_job(state: FakeState, req: Request, project: str, job_id: str) -> Response:
    state.store.delete(project, job_id, _job_location(req))
    return Response.empty(204)


# -- jobs.list -----------------------------------------------------------------
_STATES = {"done", "pending", "running"}


def list_jobs(state: FakeState, req: Request, project: str) -> Response:
    states = {s.lower() for s in req.params("stateFilter")}
    if states - _STATES:
        raise invalid(f"Invalid stateFilter value(s): {sorted(states - _STATES)}")
    projection = (req.param("projection") or "minimal").lower()
    if projection not in ("full", "minimal"):
        raise invalid(f"Invalid projection: {projection}")
    jobs, token, now = state.store.list(
        project, user_email=state.user_email, all_users=req.flag("allUsers"), states=states or None,
        min_creation_ms=req.int_param("minCreationTime"), max_creation_ms=req.int_param("maxCreationTime"),
        parent_job_id=req.param("parentJobId") or None, max_results=req.int_param("maxResults"),
        page_token=req.param("pageToken") or None)
    body: dict = {"kind": "bigquery#jobList", "etag": f"fakebq-{int(now * 1000)}",
                  "jobs": [list_entry(j, now, state.store.num_children(j, now), projection == "full")
                           for j in jobs]}
    if token:
        body["nextPageToken"] = token
    return Response.json(200, body)


# -- jobs.getQueryResults ----------------------------------------------------------
def get_query_results(state: FakeState, req: Request, project: str, job_id: str) -> Response:
    """Hold the call until the job is DONE or timeoutMs passes, like BigQuery.

    (QueryJob.result() loops on this call without sleeping, so answering
    "not complete" at once would make the client spin.)
    """
    timeout_ms = req.int_param("timeoutMs")
    deadline = time.monotonic() + (DEFAULT_QUERY_RESULTS_TIMEOUT_MS if timeout_ms is None else timeout_ms) / 1000
    interrupt = state.interrupt
    while True:
        job, now = state.store.get(project, job_id, _job_location(req))
        if job.state_at(now) == DONE or interrupt.is_set():
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        until = state.clock.real_seconds_until(job.effective_end()[0])
        state.clock.wait(min(remaining, 0.25, 0.25 if until is None else until + 0.001))
    ref = {"projectId": project, "jobId": job_id, "location": job.location}
    if job.state_at(now) != DONE:
        return Response.json(200, {"kind": "bigquery#getQueryResultsResponse", "jobReference": ref,
                                   "jobComplete": False})
    _, error = job.effective_end()
    if error is not None:
        raise ApiError(400, error["reason"], error["message"])
    return Response.json(200, {
        "kind": "bigquery#getQueryResultsResponse", "jobReference": ref, "jobComplete": True,
        "schema": {"fields": []}, "totalBytesProcessed": str(job.behaviour.total_bytes_processed),
        "cacheHit": False,
    })


# -- media uploads -------------------------------------------------------------------
def _check_load_resource(metadata: object) -> dict:
    if not isinstance(metadata, dict):
        raise invalid("The upload metadata must be a job resource (JSON object)")
    if job_type_of(metadata.get("configuration")) != "LOAD":
        raise invalid("Media uploads are only allowed for load jobs")
    job_id = (metadata.get("jobReference") or {}).get("jobId")
    if job_id is not None:
        check_job_id(job_id)
    return metadata


def _insert_upload(state: FakeState, req: Request, project: str, metadata: dict, data: bytes) -> Response:
    job, _ = state.store.insert(project, metadata, user_email=state.user_email,
                                resolve=state.resolve_behaviour, upload_bytes=data)
    return Response.json(200, state.render(job, state.clock.now(), req.base_url))


def start_upload(state: FakeState, req: Request, project: str) -> Response:
    upload_type = req.param("uploadType")
    if upload_type == "multipart":
        metadata, data = parse_multipart_related(req.body, req.headers.get("Content-Type", ""))
        return _insert_upload(state, req, project, _check_load_resource(metadata), data)
    if upload_type == "resumable":
        metadata = _check_load_resource(req.json())
        job_id = (metadata.get("jobReference") or {}).get("jobId")
        if job_id is not None:
            existing = state.store.find_any(job_id, project)
            if existing is not None:
                raise duplicate(project, existing.location, job_id)
        session = state.uploads.open(project, metadata, job_id)
        query = urllib.parse.urlencode({"uploadType": "resumable", "upload_id": session.upload_id})
        location = f"{req.base_url}/upload/bigquery/v2/projects/{project}/jobs?{query}"
        return Response.empty(200, {"Location": location})
    raise invalid(f"Unsupported uploadType: {upload_type!r} (expected multipart or resumable)")


def upload_chunk(state: FakeState, req: Request, project: str) -> Response:
    session = state.uploads.get(req.param("upload_id"))
    if session is None or session.project != project:
        raise ApiError(404, "notFound", f"Not found: upload session {req.param('upload_id')}")
    with session.lock:
        if session.finished_job is not None:
            job, now = state.store.get(*session.finished_job, None)
            return Response.json(200, state.render(job, now, req.base_url))
        start, _end, total = parse_content_range(req.headers.get("Content-Range"))
        data = req.body
        if start is not None:
            have = len(session.received)
            if start > have:
                raise invalid(f"Chunk starts at byte {start} but only {have} bytes were received")
            session.received += data[have - start:]
        if total is not None:
            session.total = total
        if session.total is not None and len(session.received) >= session.total:
            payload = bytes(session.received[: session.total])
            resp = _insert_upload(state, req, project, session.metadata, payload)
            body = json.loads(resp.body)
            session.finished_job = (project, body["jobReference"]["jobId"], body["jobReference"]["location"])
            return resp
        headers = {"Range": f"bytes=0-{len(session.received) - 1}"} if session.received else {}
        return Response.empty(308, headers)


ROUTES = [
    Route("POST", re.compile(f"^{_V2}/jobs$"), "insert", insert_job),
    Route("GET", re.compile(f"^{_V2}/jobs$"), "list", list_jobs),
    Route("GET", re.compile(f"^{_V2}/jobs/{_J}$"), "get", get_job),
    Route("POST", re.compile(f"^{_V2}/jobs/{_J}/cancel$"), "cancel", cancel_job),
    Route("DELETE", re.compile(f"^{_V2}/jobs/{_J}/delete$"), "delete", delete_job),
    Route("GET", re.compile(f"^{_V2}/queries/{_J}$"), "query_results", get_query_results),
    Route("POST", re.compile(f"^{_UPLOAD}$"), "upload", start_upload),
    Route("PUT", re.compile(f"^{_UPLOAD}$"), "upload_chunk", upload_chunk),
]


def match_route(method: str, path: str) -> tuple[Route, dict] | None:
    for route in ROUTES:
        if route.method == method:
            m = route.pattern.match(path)
            if m:
                return route, {k: urllib.parse.unquote(v) for k, v in m.groupdict().items()}
    return None


def peek_job_id(state: FakeState, route: Route, req: Request, params: dict) -> str | None:
    """The job a call is about, known before acting (for faults and the log)."""
    if "job_id" in params:
        return params["job_id"]
    try:
        if route.endpoint == "insert" or (route.endpoint == "upload" and req.param("uploadType") == "resumable"):
            body = json.loads(req.body or b"{}")
            return (body.get("jobReference") or {}).get("jobId")
        if route.endpoint == "upload":
            metadata, _ = parse_multipart_related(req.body, req.headers.get("Content-Type", ""))
            return (metadata.get("jobReference") or {}).get("jobId")
        if route.endpoint == "upload_chunk":
            session = state.uploads.get(req.param("upload_id"))
            return session.job_id if session else None
    except (ApiError, ValueError, AttributeError, TypeError):
        return None
    return None
