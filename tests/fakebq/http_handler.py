"""The socket side: parse HTTP, apply injected faults, call a route, answer
(or drop the connection), and log the call.

Faults live here because they are about the transport: a reset must really
tear the TCP connection down (RST via SO_LINGER 0) so the client sees exactly
what it would see on a flaky network.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import faults as F
from .api_errors import ApiError
from .bq_routes import match_route, peek_job_id
from .control_routes import handle_control
from .http_messages import Request, Response
from .state import FakeState

_PRE_ACT_KINDS = F.STATUS_KINDS + (F.RESET_BEFORE, F.RESET_AFTER, F.DELAY)


class FakeBigQueryHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops SYNs under concurrent
    # connects, which costs the client a 1 s retransmit.
    request_queue_size = 128

    def __init__(self, address, state: FakeState, verbose: bool = False):
        self.state = state
        self.verbose = verbose
        super().__init__(address, FakeBigQueryHandler)

    def handle_error(self, request, client_address):
        # Clients that gave up (timeouts, our own resets) are expected here.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # includes ConnectionError
            return
        super().handle_error(request, client_address)


class FakeBigQueryHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakebq/1.0"
    server: FakeBigQueryHTTPServer

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle +
        # delayed ACK add ~40 ms to every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self):
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def log_message(self, format, *args):  # noqa: A002 - signature from the base class
        if self.server.verbose:
            sys.stderr.write("fakebq: " + (format % args) + "\n")

    # -- request plumbing ----------------------------------------------------
    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _request(self) -> Request:
        parsed = urllib.parse.urlsplit(self.path)
        host = self.headers.get("Host") or "%s:%s" % self.server.server_address[:2]
        return Request(method=self.command, path=parsed.path,
                       query=urllib.parse.parse_qs(parsed.query, keep_blank_values=True),
                       headers=self.headers, body=self._read_body(), base_url=f"http://{host}")

    def _send(self, resp: Response) -> None:
        try:
            self.send_response(resp.status)
            for name, value in resp.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            if resp.body:
                self.wfile.write(resp.body)
        except (ConnectionError, OSError):
            self.close_connection = True

    def _reset_connection(self) -> None:
        """Drop the connection with a TCP RST and no answer."""
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        sock.close()
        self.rfile.close()  # the last reference: the descriptor closes now

    # -- dispatch ------------------------------------------------------------
    def _handle(self) -> None:
        state = self.server.state
        req = self._request()
        if req.path == "/_fake" or req.path.startswith("/_fake/"):
            try:
                resp = handle_control(state, req)
            except Exception as exc:
                traceback.print_exc()
                resp = Response.error(ApiError(500, "fakebqBug", f"fakebq internal bug: {exc!r}"))
            self._send(resp)
            return

        found = match_route(req.method, req.path)
        if found is None:
            resp = Response.error(ApiError(404, "notFound", f"fakebq: unsupported endpoint {req.method} {req.path}"))
            state.call_log.record(endpoint="unknown", method=req.method, path=req.path, project=None,
                                  job_id=None, status=resp.status, fault=None, reason=resp.reason)
            self._send(resp)
            return
        route, params = found
        job_id = peek_job_id(state, route, req, params)
        interrupt = state.interrupt
        fault = state.injector.pick(route.endpoint, job_id, _PRE_ACT_KINDS)
        kind = fault.kind if fault else None

        def log(sent: Response | None, acted: Response | None) -> None:
            shown = sent or acted
            state.call_log.record(
                endpoint=route.endpoint, method=req.method, path=req.path, project=params.get("project"),
                job_id=job_id, status=sent.status if sent else None,
                fault=kind or (acted.fault if acted else None), reason=shown.reason if shown else None,
                acted_status=acted.status if acted else None, query=dict(req.query),
                listed=_listed_job_ids(route.endpoint, sent))

        # Calls are logged before the client can see the outcome, so a test
        # that inspects the log right after a call always finds it there.
        if kind in F.STATUS_KINDS:
            resp = Response.error(F.status_fault_error(kind), fault=kind)
            log(resp, None)
            self._send(resp)
            return
        if kind == F.RESET_BEFORE:
            log(None, None)
            self._reset_connection()
            return

        resp = self._act(state, route, req, params, job_id)

        if kind == F.RESET_AFTER:
            log(None, resp)
            self._reset_connection()
            return
        log(resp, resp)
        if kind == F.DELAY:
            interrupt.wait(fault.delay_s)
        self._send(resp)

    def _act(self, state: FakeState, route, req: Request, params: dict, job_id: str | None) -> Response:
        try:
            resp = route.handler(state, req, **params)
        except ApiError as exc:
            resp = Response.error(exc)
        except Exception as exc:  # a bug in the fake: say so loudly, with a non-retryable reason
            traceback.print_exc()
            resp = Response.error(ApiError(500, "fakebqBug", f"fakebq internal bug: {exc!r}"))
        if resp.status == 409 and resp.reason == "duplicate" and job_id and route.endpoint in ("insert", "upload"):
            if state.injector.pick(route.endpoint, job_id, (F.NOT_FOUND_AFTER_CONFLICT,)):
                state.store.arm_not_found_once(params["project"], job_id)
                resp.fault = F.NOT_FOUND_AFTER_CONFLICT
        return resp


def _listed_job_ids(endpoint: str, sent: Response | None) -> list[str]:
    """The job IDs a ``jobs.list`` answer showed (what a poller learned from it), for the call log."""
    if endpoint != "list" or sent is None or sent.status != 200:
        return []
    try:
        jobs = json.loads(sent.body or b"{}").get("jobs") or []
    except ValueError:
        return []
    return [j.get("jobReference", {}).get("jobId") for j in jobs if isinstance(j, dict)]
