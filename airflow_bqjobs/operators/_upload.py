"""The local side of an upload load: check ``source_file`` and measure it, before anything is sent."""

from __future__ import annotations

import io
import os
import stat
from typing import Any

from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.core.upload import FIELD, STREAM_NAME, FileIdentity


def inspect_source(source: Any, field: str = FIELD) -> FileIdentity:
    """Name and size of ``source``: a readable regular file's path, or a seekable binary file object."""
    if isinstance(source, (str, os.PathLike)):
        return _inspect_path(source, field)
    if callable(getattr(source, "read", None)):
        return _inspect_file_object(source, field)
    raise InvalidJobInput(field, f"must be a file path or a binary file object, got {type(source).__name__}")


def _inspect_path(source: str | os.PathLike, field: str) -> FileIdentity:
    path = os.fspath(source)
    if not isinstance(path, str) or not path.strip():
        raise InvalidJobInput(field, f"must be a non-empty path, got {source!r}")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InvalidJobInput(field, f"{path!r} does not exist (on this worker)") from None
    except OSError as exc:
        raise InvalidJobInput(field, f"cannot inspect {path!r}: {exc.strerror or type(exc).__name__}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InvalidJobInput(field, f"{path!r} is not a regular file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise InvalidJobInput(field, f"{path!r} cannot be read: {exc.strerror or type(exc).__name__}") from None
    return FileIdentity(name=path, size=info.st_size)


def _inspect_file_object(source: Any, field: str) -> FileIdentity:
    seekable = getattr(source, "seekable", None)
    if getattr(source, "closed", False):
        raise InvalidJobInput(field, "the file object is closed")
    if not callable(getattr(source, "seek", None)) or (callable(seekable) and not seekable()):
        raise InvalidJobInput(field, "the file object must be seekable: a retried upload starts again from its beginning")
    if isinstance(source, io.TextIOBase) or not isinstance(source.read(0), bytes):
        raise InvalidJobInput(field, "the file object must be opened in binary mode ('rb')")
    position = source.tell()
    size = source.seek(0, os.SEEK_END)
    source.seek(position)
    name = getattr(source, "name", None)
    return FileIdentity(name=name if isinstance(name, str) and name else STREAM_NAME, size=size)
