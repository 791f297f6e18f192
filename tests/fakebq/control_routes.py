"""The ``/_fake/...`` HTTP API: drive the fake from another process.

Needed when the fake runs as a subprocess next to a real Airflow scheduler
and triggerer; tests then steer it with RemoteFakeBigQuery over HTTP.
"""

from __future__ import annotations

import re

from . import controls
from .api_errors import ApiError
from .http_messages import Request, Response
from .state import FakeState


def _ok(payload: object = None) -> Response:
    return Response.json(200, {"ok": True} if payload is None else payload)


def handle_control(state: FakeState, req: Request) -> Response:
    try:
        return _dispatch(state, req)
    except ApiError as exc:
        return Response.error(exc)
    except (ValueError, TypeError) as exc:
        return Response.error(ApiError(400, "invalid", f"fakebq control: {exc}"))


def _dispatch(state: FakeState, req: Request) -> Response:
    m, path = req.method, req.path.rstrip("/")
    body = req.json() if m in ("POST", "PUT") else {}
    if m in ("POST", "PUT") and not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")

    if path == "/_fake/health" and m == "GET":
        return _ok({"ok": True, "url": req.base_url})
    if path == "/_fake/reset" and m == "POST":
        state.reset()
        return _ok()
    if path == "/_fake/jobs" and m == "GET":
        return _ok({"jobs": state.store.snapshot(req.base_url)})
    if path == "/_fake/calls" and m == "GET":
        return _ok(controls.calls_report(state))

    if path == "/_fake/rules":
        if m == "POST":
            return _ok({"id": controls.add_rule(state, body)})
        if m == "GET":
            return _ok({"rules": state.rules.snapshot()})
        if m == "DELETE":
            state.rules.clear()
            return _ok()
    if (match := re.fullmatch(r"/_fake/rules/(\d+)", path)) and m == "DELETE":
        return _ok({"removed": state.rules.remove(int(match.group(1)))})

    if path == "/_fake/faults":
        if m == "POST":
            return _ok({"id": controls.add_fault(state, body)})
        if m == "GET":
            return _ok({"faults": state.injector.snapshot(), "counts": state.injector.counts()})
        if m == "DELETE":
            state.injector.clear()
            return _ok()
    if (match := re.fullmatch(r"/_fake/faults/(\d+)", path)) and m == "DELETE":
        return _ok({"removed": state.injector.remove(int(match.group(1)))})

    if path == "/_fake/clock":
        if m == "POST":
            return _ok(controls.set_clock(state, body))
        if m == "GET":
            return _ok(state.clock.state())
    if path == "/_fake/defaults":
        if m == "POST":
            return _ok(controls.set_defaults(state, body))
        if m == "GET":
            return _ok(state.defaults.to_dict())
    if path == "/_fake/config" and m == "POST":
        return _ok(controls.set_config(state, body))

    if (match := re.fullmatch(r"/_fake/uploads/([^/]+)/([^/]+)", path)) and m == "GET":
        project = None if match.group(1) == "-" else match.group(1)
        data = controls.uploaded_bytes(state, match.group(2), project)
        if data is None:
            raise ApiError(404, "notFound", f"no uploaded bytes for job {match.group(2)}")
        return Response(200, data, {"Content-Type": "application/octet-stream"})

    raise ApiError(404, "notFound", f"fakebq control: no route {m} {req.path}")
