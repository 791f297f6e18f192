"""BigQuery-shaped error answers.

The client turns an HTTP error into an exception by reading
``error.errors[0].reason``; retry decisions hang on that reason, so every
error the fake returns must carry it in exactly this shape.
"""

from __future__ import annotations

_STATUS_BY_CODE = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


class ApiError(Exception):
    """Raised inside request handling; becomes a JSON error answer."""

    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message

    def body(self) -> dict:
        return error_body(self.code, self.reason, self.message)


def error_body(code: int, reason: str, message: str) -> dict:
    return {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": _STATUS_BY_CODE.get(code, "UNKNOWN"),
        }
    }


def job_name(project: str, location: str, job_id: str) -> str:
    """The ``project:LOCATION.jobId`` form BigQuery uses in ids and messages."""
    return f"{project}:{location}.{job_id}"


def not_found(project: str, location: str | None, job_id: str) -> ApiError:
    return ApiError(404, "notFound", f"Not found: Job {job_name(project, location or 'US', job_id)}")


def duplicate(project: str, location: str, job_id: str) -> ApiError:
    return ApiError(409, "duplicate", f"Already Exists: Job {job_name(project, location, job_id)}")


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid", message)
