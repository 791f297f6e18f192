"""Credentials and endpoint from a connection's extras, compatible with ``google_cloud_default``.

Extras are read with or without the ``extra__google_cloud_platform__`` prefix (old Google provider
connections still carry it). An emulator endpoint (``emulator_host`` extra or the
``BIGQUERY_EMULATOR_HOST`` variable that google-cloud-bigquery honours) means anonymous credentials.
No connection at all means Application Default Credentials. Key material never reaches an error
message or a log line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

from airflow_bqjobs.core.errors import InvalidJobInput

SCOPES = ("https://www.googleapis.com/auth/bigquery", "https://www.googleapis.com/auth/cloud-platform")
_PREFIXES = ("extra__google_cloud_platform__", "extra__bigquery_jobs__")
EMULATOR_ENV = "BIGQUERY_EMULATOR_HOST"


def normalize_extras(extras: Mapping[str, Any] | None) -> dict[str, Any]:
    """Drop the legacy prefixes; an unprefixed key wins over a prefixed one; empty values count as unset."""
    out: dict[str, Any] = {}
    for key, value in (extras or {}).items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                if key in out:
                    value = out[key]
                break
        if value not in (None, ""):
            out[key] = value
    return out


@dataclass(frozen=True)
class ClientSettings:
    credentials: Any
    project_id: str | None
    api_endpoint: str | None


def emulator_endpoint(extras: Mapping[str, Any]) -> str | None:
    host = extras.get("emulator_host") or os.environ.get(EMULATOR_ENV)
    if not host:
        return None
    return host if "://" in host else f"http://{host}"


def client_settings(extras: Mapping[str, Any]) -> ClientSettings:
    """Credentials, their project and the API endpoint for these (normalised) extras."""
    endpoint = emulator_endpoint(extras)
    project = extras.get("project") or extras.get("project_id")
    if endpoint:
        from google.auth.credentials import AnonymousCredentials

        return ClientSettings(AnonymousCredentials(), project, endpoint)
    if extras.get("key_path"):
        credentials = _from_key_path(extras["key_path"])
    elif extras.get("keyfile_dict"):
        credentials = _from_keyfile_dict(extras["keyfile_dict"])
    else:
        import google.auth

        credentials, adc_project = google.auth.default(scopes=list(SCOPES))
        return ClientSettings(credentials, project or adc_project, None)
    return ClientSettings(credentials, project or getattr(credentials, "project_id", None), None)


def _from_key_path(path: str):
    from google.oauth2 import service_account

    try:
        return service_account.Credentials.from_service_account_file(path, scopes=list(SCOPES))
    except OSError as exc:
        raise InvalidJobInput("key_path", f"cannot read the key file {path!r}: {exc.strerror or type(exc).__name__}") from None
    except (ValueError, KeyError) as exc:
        raise InvalidJobInput(
            "key_path", f"{path!r} is not a service-account key file ({type(exc).__name__})"
        ) from None


def _from_keyfile_dict(value: Any):
    from google.oauth2 import service_account

    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise InvalidJobInput("keyfile_dict", "is not valid JSON (content not shown)") from None
    if not isinstance(value, Mapping):
        raise InvalidJobInput("keyfile_dict", "must be a JSON object holding a service-account key")
    try:
        return service_account.Credentials.from_service_account_info(dict(value), scopes=list(SCOPES))
    except (ValueError, KeyError) as exc:
        raise InvalidJobInput(
            "keyfile_dict", f"is not a usable service-account key ({type(exc).__name__}; content not shown)"
        ) from None
