"""Plain request/response values passed between the HTTP handler and routes.

Routes never touch sockets, so they can be read (and reasoned about) as pure
functions of the fake's state and a request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email.message import Message

from .api_errors import ApiError, invalid


@dataclass
class Request:
    method: str
    path: str                          # URL path, no query string
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    base_url: str                      # http://host:port as the client addressed us

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def params(self, name: str) -> list[str]:
        return list(self.query.get(name, []))

    def flag(self, name: str) -> bool:
        return (self.param(name) or "").lower() in ("true", "1", "yes")

    def int_param(self, name: str) -> int | None:
        value = self.param(name)
        if value in (None, ""):
            return None
        try:
            return int(value)
        except ValueError:
            raise invalid(f"Invalid value for {name}: {value!r}") from None

    def json(self) -> object:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise invalid(f"Request body is not valid JSON: {exc}") from None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    reason: str | None = None          # BigQuery error reason, for the call log
    fault: str | None = None           # a fault that produced this answer

    @classmethod
    def json(cls, status: int, payload: object, headers: dict | None = None) -> "Response":
        return cls(status, json.dumps(payload).encode(),
                   {"Content-Type": "application/json; charset=UTF-8", **(headers or {})})

    @classmethod
    def error(cls, exc: ApiError, fault: str | None = None) -> "Response":
        resp = cls.json(exc.code, exc.body())
        resp.reason = exc.reason
        resp.fault = fault
        return resp

    @classmethod
    def empty(cls, status: int, headers: dict | None = None) -> "Response":
        return cls(status, b"", dict(headers or {}))
