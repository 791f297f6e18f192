"""One HTTP session and one credentials object per connection per process, shared by every trigger.

A triggerer holding 1,000 triggers on one connection keeps one credentials object (one OAuth token
request per hour, not one per trigger), one ``requests`` session whose connection pool is bounded
(``POOL_SIZE`` sockets, callers wait for a free one rather than open more), and one
``google.cloud.bigquery.Client`` per project on top of them. Blocking calls run in the pool of
:func:`executor` (``POOL_SIZE`` threads of our own, not asyncio's default pool that other triggers
share).

Entries are keyed by process id (a forked child builds its own: sockets and threads do not survive a
fork), connection id and the connection's content (a changed key or endpoint gives new clients). The
connection's extras are kept only inside the credentials object, never logged.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from airflow_bqjobs.core.credential_options import parse_impersonation_chain
from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.hooks.credentials import EMULATOR_ENV, normalize_extras

POOL_SIZE = 8
# A connection read by one trigger serves the triggers that start in the next CONNECTION_TTL_S: a
# triggerer starting 1,000 triggers reads (and masks) it once, and a changed key is used within a minute.
CONNECTION_TTL_S = 60.0
_connections: dict[tuple, tuple] = {}  # (pid, conn_id) -> (read at, connection, extras, fingerprint)
_reading: dict[tuple, Any] = {}  # (loop, pid, conn_id) -> the task reading it now
_lock = threading.Lock()
_transports: dict[tuple, _Transport] = {}
_building: dict[tuple, threading.Lock] = {}  # conn key -> held while its transport is built
_hooks: dict[tuple, Any] = {}
_executors: dict[int, ThreadPoolExecutor] = {}
stats = {"transports": 0, "clients": 0}


@dataclass
class _Transport:
    settings: Any  # ClientSettings: credentials, project, endpoint
    session: Any  # google.auth AuthorizedSession, bounded pool
    clients: dict


def executor() -> ThreadPoolExecutor:
    """This process's pool for the poller's blocking calls (``POOL_SIZE`` threads, as many as sockets)."""
    pid = os.getpid()
    with _lock:
        pool = _executors.get(pid)
        if pool is None:
            pool = _executors[pid] = ThreadPoolExecutor(POOL_SIZE, thread_name_prefix="bqjobs-poller")
        return pool


def _fingerprint(extras: dict) -> str:
    content = json.dumps(extras, sort_keys=True, default=str) + "\0" + os.environ.get(EMULATOR_ENV, "")
    return hashlib.sha256(content.encode()).hexdigest()


async def ashared_hook(gcp_conn_id: str, read_connection, *, project_id: str | None, location: str | None,
                       request_timeout: float, impersonation_chain: Any = None):
    """:func:`shared_hook` for a trigger: the connection is read (``await read_connection(id)``) at most
    once per ``CONNECTION_TTL_S`` per process, however many triggers start meanwhile."""
    import asyncio

    key = (os.getpid(), gcp_conn_id)
    entry = _connections.get(key)
    if entry is None or time.monotonic() - entry[0] > CONNECTION_TTL_S:
        loop = asyncio.get_running_loop()
        reading = _reading.get((loop, *key))
        if reading is None:
            async def read():
                connection = await read_connection(gcp_conn_id)
                extras = normalize_extras(connection.extra_dejson if connection is not None else {})
                _connections[key] = (time.monotonic(), connection, extras, _fingerprint(extras))
                return _connections[key]

            reading = _reading[(loop, *key)] = loop.create_task(read())
            reading.add_done_callback(lambda _: _reading.pop((loop, *key), None))
        entry = await asyncio.shield(reading)
    _, connection, extras, fingerprint = entry
    build = functools.partial(shared_hook, gcp_conn_id, connection, project_id=project_id, location=location,
                              request_timeout=request_timeout, impersonation_chain=impersonation_chain,
                              _extras=(extras, fingerprint))
    key = _hook_key(gcp_conn_id, fingerprint, impersonation_chain, project_id, location, request_timeout)
    with _lock:
        hook = _hooks.get(key)
    if hook is not None:
        return hook
    # The first hook of a connection imports the BigQuery client and builds (and may refresh) its
    # credentials: blocking work, seconds on a loaded triggerer, kept off the event loop.
    return await asyncio.get_running_loop().run_in_executor(executor(), build)


def _hook_key(gcp_conn_id: str, fingerprint: str, impersonation_chain: Any, project_id: str | None,
              location: str | None, request_timeout: float) -> tuple:
    chain = tuple(parse_impersonation_chain(impersonation_chain))  # other credentials: another transport
    return (os.getpid(), gcp_conn_id, fingerprint, chain, project_id, location, float(request_timeout))


def shared_hook(gcp_conn_id: str, connection: Any, *, project_id: str | None, location: str | None,
                request_timeout: float, impersonation_chain: Any = None, _extras: tuple | None = None):
    """A :class:`BigQueryJobsHook` whose client rides on the connection's shared session and credentials."""
    from airflow_bqjobs.hooks.jobs import BigQueryJobsHook

    if _extras is None:
        extras = normalize_extras(connection.extra_dejson if connection is not None else {})
        _extras = (extras, _fingerprint(extras))
    key = _hook_key(gcp_conn_id, _extras[1], impersonation_chain, project_id, location, request_timeout)
    conn_key, chain = key[:4], key[3]
    with _lock:
        hook = _hooks.get(key)
        if hook is not None:
            return hook
    hook = BigQueryJobsHook(gcp_conn_id, project_id=project_id, location=location,
                            request_timeout=request_timeout, connection=connection, impersonation_chain=chain or None)
    transport = _transport(conn_key, hook)
    project = project_id or transport.settings.project_id
    if not project:
        raise InvalidJobInput(
            "project_id",
            f"no project: pass project_id, set the 'project' extra of connection {gcp_conn_id!r},"
            " or use credentials that name one",
        )
    with _lock:
        client = transport.clients.get(project)
        if client is None:
            client = transport.clients[project] = _build_client(transport, project)
        hook.use_client(client)
        return _hooks.setdefault(key, hook)


def _transport(conn_key: tuple, hook) -> _Transport:
    """The connection's transport, built once however many triggers ask for it at the same time (each
    build refreshes the credentials: one token request per connection, not one per concurrent caller)."""
    with _lock:
        transport = _transports.get(conn_key)
        building = None if transport is not None else _building.setdefault(conn_key, threading.Lock())
    if transport is not None:
        return transport
    with building:
        with _lock:
            transport = _transports.get(conn_key)
        if transport is None:
            transport = _build_transport(hook)
            with _lock:
                _transports[conn_key] = transport
        return transport


def _build_transport(hook) -> _Transport:
    import requests
    from google.auth.transport.requests import AuthorizedSession

    settings = hook.client_settings()
    _refresh_once_at_a_time(settings.credentials)
    session = AuthorizedSession(settings.credentials)
    adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=POOL_SIZE, pool_block=True)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    stats["transports"] += 1
    return _Transport(settings, session, {})


def _build_client(transport: _Transport, project: str):
    from google.api_core.client_info import ClientInfo
    from google.cloud import bigquery

    from airflow_bqjobs import __version__
    from airflow_bqjobs.hooks.jobs import USER_AGENT

    endpoint = transport.settings.api_endpoint
    stats["clients"] += 1
    return bigquery.Client(
        project=project,
        credentials=transport.settings.credentials,
        _http=transport.session,
        client_options={"api_endpoint": endpoint} if endpoint else None,
        client_info=ClientInfo(user_agent=f"{USER_AGENT}/{__version__}"),
    )


def _refresh_once_at_a_time(credentials) -> None:
    """google-auth refreshes without a lock: threads finding the token expired together would each ask
    for one. Serialise refreshes; a thread that waited finds a new token and reuses it."""
    original = getattr(credentials, "refresh", None)
    if original is None:
        return
    lock = threading.Lock()

    def refresh(request):
        token_before = getattr(credentials, "token", None)
        with lock:
            if credentials.token is not None and credentials.token != token_before and credentials.valid:
                return
            original(request)

    credentials.refresh = refresh


def reset() -> None:
    """Forget every shared client (tests; a process that changed its configuration)."""
    with _lock:
        for transport in _transports.values():
            transport.session.close()
        _transports.clear()
        _building.clear()
        _hooks.clear()
        _connections.clear()
