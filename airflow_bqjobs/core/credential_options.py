"""The credential options the Google provider's users set, parsed and checked (pure: no Google client).

* ``impersonation_chain``: a service account to impersonate, or a delegation chain (a list, or one
  comma-separated string as the Google provider's connection form stores it); the last account is
  the one impersonated, each earlier one holds Token Creator on the next (as ``google.auth``'s
  ``delegates``).
* ``scope``: comma-separated OAuth scopes; default BigQuery + cloud-platform.
* ``is_anonymous``: a boolean, or its text form from a connection form ("true", "1", ...).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from airflow_bqjobs.core.errors import InvalidJobInput

DEFAULT_SCOPES = ("https://www.googleapis.com/auth/bigquery", "https://www.googleapis.com/auth/cloud-platform")
# name@project.iam.gserviceaccount.com, or a default account (123-compute@developer.gserviceaccount.com).
_ACCOUNT_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")


def parse_impersonation_chain(value: Any, field: str = "impersonation_chain") -> tuple[str, ...]:
    """The chain as a tuple of account emails, the impersonated one last; ``()`` for none."""
    if value is None or value == "" or value == []:
        return ()
    if isinstance(value, str):
        accounts = [part.strip() for part in value.split(",")]
    elif isinstance(value, Sequence):
        accounts = list(value)
    else:
        raise InvalidJobInput(field, f"must be a service account email or a list of them, got {type(value).__name__}")
    for index, account in enumerate(accounts):
        if not isinstance(account, str) or not _ACCOUNT_RE.fullmatch(account):
            where = field if len(accounts) == 1 else f"{field}[{index}]"
            raise InvalidJobInput(where, f"{account!r} is not a service account email (name@project.iam.gserviceaccount.com)")
    return tuple(accounts)


def split_chain(chain: Sequence[str]) -> tuple[str, list[str]]:
    """(target principal, delegates) as ``google.auth.impersonated_credentials`` takes them."""
    return chain[-1], list(chain[:-1])


def project_of_service_account(email: str) -> str | None:
    """``name@my-project.iam.gserviceaccount.com`` -> ``my-project`` (what the Google provider bills)."""
    domain = email.partition("@")[2]
    suffix = ".iam.gserviceaccount.com"
    return domain[: -len(suffix)] if domain.endswith(suffix) else None


def parse_scopes(value: Any, field: str = "scope") -> tuple[str, ...]:
    if value is None or value == "":
        return DEFAULT_SCOPES
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, Sequence) or isinstance(items, str):
        raise InvalidJobInput(field, f"must be comma-separated OAuth scopes, got {type(value).__name__}")
    scopes = tuple(s.strip() for s in items if isinstance(s, str) and s.strip())
    if len(scopes) != len(items) or not all(s.startswith("https://") for s in scopes):
        raise InvalidJobInput(field, f"{value!r} is not a comma-separated list of OAuth scope URLs")
    return scopes


def parse_flag(value: Any, field: str) -> bool:
    if isinstance(value, bool) or value is None:
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidJobInput(field, f"{value!r} is not a boolean (true / false)")
