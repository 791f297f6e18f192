"""The two media-upload protocols of load_table_from_file.

google-resumable-media sends small files as one ``multipart/related`` POST
(JSON job resource + data) and larger or unsized ones as a resumable session:
a POST with the job resource, answered with a ``Location`` carrying
``upload_id``, then PUTs with ``Content-Range`` answered 308 + ``Range`` until
the last one, which is answered with the job resource.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
from dataclasses import dataclass, field

from .api_errors import invalid

_BOUNDARY_RE = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_RANGE_RE = re.compile(r"^bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)$")


def parse_multipart_related(body: bytes, content_type: str) -> tuple[dict, bytes]:
    """(job resource, data) from a multipart/related upload body."""
    match = _BOUNDARY_RE.search(content_type or "")
    if not content_type.lower().startswith("multipart/related") or match is None:
        raise invalid(f"Expected a multipart/related body with a boundary, got {content_type!r}")
    delimiter = b"--" + match.group(1).encode()
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break  # closing delimiter
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
        head, sep, payload = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise invalid("Malformed multipart part: no header/body separator")
        if payload.endswith(b"\r\n"):
            payload = payload[:-2]
        parts.append(payload)
    if len(parts) != 2:
        raise invalid(f"Expected 2 multipart parts (metadata, media), got {len(parts)}")
    try:
        metadata = json.loads(parts[0])
    except json.JSONDecodeError as exc:
        raise invalid(f"Metadata part is not JSON: {exc}") from None
    return metadata, parts[1]


def parse_content_range(header: str | None) -> tuple[int | None, int | None, int | None]:
    """(start, end, total) from ``bytes s-e/t``, ``bytes s-e/*``, ``bytes */t``, ``bytes */*``."""
    match = _RANGE_RE.match((header or "").strip())
    if match is None:
        raise invalid(f"Invalid Content-Range header: {header!r}")
    start, end, total = match.groups()
    return (None if start is None else int(start), None if end is None else int(end),
            None if total == "*" else int(total))


@dataclass
class ResumableSession:
    upload_id: str
    project: str
    metadata: dict
    job_id: str | None
    received: bytearray = field(default_factory=bytearray)
    total: int | None = None
    finished_job: tuple[str, str, str] | None = None   # (project, job_id, location) once the job exists
    # Held while a chunk is applied, so a retried chunk cannot interleave.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class UploadSessions:
    """Open resumable uploads, by upload_id."""

    def __init__(self):
        self._lock = threading.Lock()
        self._sessions: dict[str, ResumableSession] = {}
        self._ids = itertools.count(1)

    def open(self, project: str, metadata: dict, job_id: str | None) -> ResumableSession:
        with self._lock:
            upload_id = f"fakebq-{next(self._ids)}-{secrets.token_hex(6)}"
            session = ResumableSession(upload_id, project, metadata, job_id)
            self._sessions[upload_id] = session
            return session

    def get(self, upload_id: str | None) -> ResumableSession | None:
        with self._lock:
            return self._sessions.get(upload_id or "")

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()
