"""The one retry rule: which API errors are transient (retried with backoff, never a task failure).

Used by the hook's request retries and by the trigger's poll loop alike. Duck-typed on
``google.api_core`` exceptions (``code``, ``errors``) so this module imports nothing heavy.
"""

from __future__ import annotations

TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
TRANSIENT_REASONS = frozenset({"rateLimitExceeded", "backendError", "internalError", "badGateway"})
# Not transient whatever the status: retrying cannot help.
PERMANENT_REASONS = frozenset({"quotaExceeded", "duplicate", "notFound", "accessDenied", "invalid"})


def error_reason(exc: BaseException) -> str | None:
    try:
        return exc.errors[0]["reason"]  # type: ignore[attr-defined]
    except (AttributeError, IndexError, KeyError, TypeError):
        return None


def is_transient(exc: BaseException) -> bool:
    reason = error_reason(exc)
    if reason in PERMANENT_REASONS:
        return False
    if reason in TRANSIENT_REASONS or getattr(exc, "code", None) in TRANSIENT_STATUS:
        return True
    return _is_network_error(exc)


def _is_network_error(exc: BaseException) -> bool:
    """Resets, refused connections, timeouts, truncated bodies: the request may or may not have acted."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    import requests  # lazy: only reached on an error path

    if isinstance(exc, requests.exceptions.SSLError):
        return False
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                        requests.exceptions.ChunkedEncodingError)):
        return True
    from google.auth.exceptions import TransportError  # lazy, as above

    return isinstance(exc, TransportError)
