"""Credentials and endpoint from a connection's extras, compatible with ``google_cloud_default``.

Extras are read with or without the ``extra__google_cloud_platform__`` prefix (old Google provider
connections still carry it). As the Google provider's connections: ``is_anonymous`` (anonymous
credentials, every other setting ignored), ``key_path`` / ``keyfile_dict`` (a service-account key),
``credential_config_file`` (an external-account / Workload Identity Federation configuration: a
path, or the JSON itself), else Application Default Credentials; ``scope`` (comma-separated OAuth
scopes); then ``impersonation_chain`` (the argument, else the extra) wraps whichever credentials
in short-lived ones of the impersonated service account. An emulator endpoint (``emulator_host``
extra or the ``BIGQUERY_EMULATOR_HOST`` variable that google-cloud-bigquery honours) means anonymous
credentials. Key material never reaches an error message or a log line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from airflow_bqjobs.core.credential_options import (
    DEFAULT_SCOPES,
    parse_flag,
    parse_impersonation_chain,
    parse_scopes,
    project_of_service_account,
    split_chain,
)
from airflow_bqjobs.core.errors import InvalidJobInput

SCOPES = DEFAULT_SCOPES
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


def client_settings(extras: Mapping[str, Any], impersonation_chain: str | Sequence[str] | None = None) -> ClientSettings:
    """Credentials, their project and the API endpoint for these (normalised) extras.

    ``impersonation_chain`` (the operator's or hook's argument) wins over the extra of that name.
    """
    endpoint = emulator_endpoint(extras)
    project = extras.get("project") or extras.get("project_id")
    if endpoint or parse_flag(extras.get("is_anonymous"), "is_anonymous"):
        from google.auth.credentials import AnonymousCredentials

        return ClientSettings(AnonymousCredentials(), project, endpoint)
    scopes = list(parse_scopes(extras.get("scope")))
    chain = parse_impersonation_chain(impersonation_chain or extras.get("impersonation_chain"))
    if extras.get("key_path"):
        credentials = _from_key_path(extras["key_path"], scopes)
        found_project = getattr(credentials, "project_id", None)
    elif extras.get("keyfile_dict"):
        credentials = _from_keyfile_dict(extras["keyfile_dict"], scopes)
        found_project = getattr(credentials, "project_id", None)
    elif extras.get("credential_config_file"):
        credentials, found_project = _from_credential_config(extras["credential_config_file"], scopes, project)
    else:
        import google.auth

        credentials, found_project = google.auth.default(scopes=scopes)
    if chain:
        from google.auth import impersonated_credentials

        target, delegates = split_chain(chain)
        credentials = impersonated_credentials.Credentials(
            source_credentials=credentials, target_principal=target, delegates=delegates, target_scopes=scopes
        )
        found_project = project_of_service_account(target) or found_project
    return ClientSettings(credentials, project or found_project, None)


def _from_credential_config(value: Any, scopes: list[str], project: str | None):
    """An external-account (Workload Identity Federation) configuration: a file path or its JSON.

    Loaded with the type-specific loaders google-auth recommends (its generic
    ``load_credentials_from_dict`` is deprecated for validating nothing), from memory: no temporary
    file holds it. The pool's project is asked of Cloud Resource Manager only when the connection
    names no ``project``.
    """
    from google.auth.exceptions import DefaultCredentialsError

    field = "credential_config_file"
    if isinstance(value, str) and not value.lstrip().startswith("{"):
        try:
            with open(value, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise InvalidJobInput(field, f"cannot read {value!r}: {exc.strerror or type(exc).__name__}") from None
        source = f"the file {value!r}"
    else:
        text, source = value, "the value"
    if isinstance(text, str):
        try:
            text = json.loads(text)
        except ValueError:
            raise InvalidJobInput(field, f"{source} is not valid JSON (content not shown)") from None
    if not isinstance(text, Mapping):
        raise InvalidJobInput(field, f"{source} must be a JSON object (a credential configuration)")
    kind = text.get("type")
    if kind not in ("external_account", "external_account_authorized_user"):
        hint = " (a service-account key goes in key_path or keyfile_dict)" if kind == "service_account" else ""
        raise InvalidJobInput(field, f"{source} has type {kind!r}; expected 'external_account' or"
                                     f" 'external_account_authorized_user'{hint}")
    try:
        if kind == "external_account_authorized_user":
            from google.auth import external_account_authorized_user

            credentials = external_account_authorized_user.Credentials.from_info(dict(text), scopes=scopes)
            return credentials, project or text.get("quota_project_id")
        credentials = _external_account(dict(text), scopes)
        if project:
            return credentials, project
        import google.auth.transport.requests

        return credentials, credentials.get_project_id(google.auth.transport.requests.Request())
    except (DefaultCredentialsError, ValueError, KeyError, TypeError) as exc:
        raise InvalidJobInput(
            field, f"{source} is not a usable credential configuration (type {kind!r}; {type(exc).__name__})"
        ) from None


def _external_account(info: dict, scopes: list[str]):
    """The external-account credentials google-auth's own loader picks for ``info``: AWS,
    executable-sourced, or file/URL-sourced identity pool."""
    source = info.get("credential_source") or {}
    if info.get("subject_token_type") == "urn:ietf:params:aws:token-type:aws4_request":
        from google.auth import aws as kind
    elif isinstance(source, Mapping) and source.get("executable") is not None:
        from google.auth import pluggable as kind
    else:
        from google.auth import identity_pool as kind
    return kind.Credentials.from_info(info, scopes=scopes)


def _from_key_path(path: str, scopes: list[str]):
    from google.oauth2 import service_account

    try:
        return service_account.Credentials.from_service_account_file(path, scopes=scopes)
    except OSError as exc:
        raise InvalidJobInput("key_path", f"cannot read the key file {path!r}: {exc.strerror or type(exc).__name__}") from None
    except (ValueError, KeyError) as exc:
        raise InvalidJobInput(
            "key_path", f"{path!r} is not a service-account key file ({type(exc).__name__})"
        ) from None


def _from_keyfile_dict(value: Any, scopes: list[str]):
    from google.oauth2 import service_account

    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise InvalidJobInput("keyfile_dict", "is not valid JSON (content not shown)") from None
    if not isinstance(value, Mapping):
        raise InvalidJobInput("keyfile_dict", "must be a JSON object holding a service-account key")
    try:
        return service_account.Credentials.from_service_account_info(dict(value), scopes=scopes)
    except (ValueError, KeyError) as exc:
        raise InvalidJobInput(
            "keyfile_dict", f"is not a usable service-account key ({type(exc).__name__}; content not shown)"
        ) from None
