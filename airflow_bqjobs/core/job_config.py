"""Job configurations in BigQuery's REST representation, checked before anything is submitted."""

from __future__ import annotations

import json
from typing import Any, Mapping

from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.core.job_id import canonical_json
from airflow_bqjobs.core.labels import merge_labels, validate_labels

JOB_TYPES = ("query", "load", "copy", "extract")


def json_object(value: Any, field: str, what: str) -> dict:
    """A dict, or JSON text of one (what a rendered template gives), that is not a whole job resource."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise InvalidJobInput(field, f"is a string but not JSON ({exc}); pass {what}") from None
    if not isinstance(value, Mapping):
        raise InvalidJobInput(field, f"must be {what}, got {type(value).__name__}")
    if "configuration" in value or "jobReference" in value:
        raise InvalidJobInput(
            field, "give the job's 'configuration' object itself (e.g. {'query': {...}}), not a whole job resource"
        )
    return dict(value)


def parse_configuration(configuration: Any, field: str = "configuration") -> dict:
    """Accept a dict or JSON text (what a rendered ``.json`` template gives); return a validated copy."""
    configuration = json_object(configuration, field, "a dict in BigQuery's REST form or a .json file")
    config = json.loads(canonical_json(configuration, field))
    job_type(config, field)
    _check_timeout(config, field)
    validate_labels(config.get("labels"), f"{field}.labels")
    return config


def job_type(configuration: Mapping, field: str = "configuration") -> str:
    present = [t for t in JOB_TYPES if t in configuration]
    if len(present) != 1:
        found = f"found {present}" if present else f"found keys {sorted(configuration)}"
        raise InvalidJobInput(field, f"must hold exactly one job type of {list(JOB_TYPES)}; {found}")
    if not isinstance(configuration[present[0]], Mapping):
        raise InvalidJobInput(f"{field}.{present[0]}", "must be a dict")
    return present[0]


def build_configuration(
    configuration: Any,
    *,
    labels: Mapping[str, str] | None = None,
    airflow_labels: Mapping[str, str] | None = None,
    job_timeout_ms: int | None = None,
) -> dict:
    """The configuration to submit: validated, with every label kept and a server-side timeout.

    Labels come from the configuration itself, then the operator's ``labels`` (which win), then
    Airflow's own (a clash with those is an error). ``jobTimeoutMs`` is added unless the user set one.
    """
    config = parse_configuration(configuration)
    user = {**(config.get("labels") or {}), **validate_labels(labels)}
    merged = merge_labels(user, airflow_labels or {})
    if merged:
        config["labels"] = merged
    return with_job_timeout(config, job_timeout_ms)


def with_job_timeout(configuration: Mapping, timeout_ms: int | None) -> dict:
    """Add ``jobTimeoutMs`` (BigQuery stops the job server-side) unless the user set one."""
    if timeout_ms is None or "jobTimeoutMs" in configuration:
        return dict(configuration)
    return {**configuration, "jobTimeoutMs": str(int(timeout_ms))}


def _check_timeout(config: Mapping, field: str) -> None:
    if "jobTimeoutMs" not in config:
        return
    value = config["jobTimeoutMs"]
    try:
        ok = int(value) > 0 and not isinstance(value, bool) and float(value) == int(value)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidJobInput(f"{field}.jobTimeoutMs", f"must be a positive whole number of milliseconds, got {value!r}")
