"""Repeat a job: turn an existing job resource into a configuration that can be submitted again.

BigQuery has no "re-run" call. The documented recipe is: read the job (``jobs.get``), drop ``id``,
``status`` and ``statistics``, give it a new ``jobId``, change what you need, ``jobs.insert`` it. Only
the ``configuration`` is submitted, so everything outside it (``id``, ``jobReference``, ``status``,
``statistics``, ``etag``, ``selfLink``, ``user_email``, ...) goes; inside it, what BigQuery filled in
itself must go too, or the new job would not be the same request:

* ``jobType``: output only.
* A query's anonymous result table (``destinationTable`` in a hidden dataset ``_...`` with a table
  ``anon...``): BigQuery picks one per query job when the user named no destination, and reports it
  with the ``writeDisposition``/``createDisposition`` it used for it. Re-sent, the new job would write
  into the old job's cache table; without them, it gets its own, as the original did.
* The singular twins BigQuery reports next to the plural fields (extract ``destinationUri`` next to
  ``destinationUris``, copy ``sourceTable`` next to ``sourceTables``): sent together they are
  ambiguous, so the singular one goes when it only repeats the plural one.
* Airflow's own labels (``airflow-dag``, ...): they describe the task that ran the old job; the
  re-run gets its own.

``configuration_overrides`` is then deep-merged: nested dicts merge key by key, any other value
(lists included) replaces, and ``None`` removes a key.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.core.job_config import job_type, json_object
from airflow_bqjobs.core.job_ref import JobRef
from airflow_bqjobs.core.job_refs import parse_job_refs
from airflow_bqjobs.core.labels import AIRFLOW_LABEL_KEYS

SOURCE_FIELD = "source_job"
OVERRIDES_FIELD = "configuration_overrides"
_SERVER_FILLED = ("jobType",)
_ANON_DISPOSITIONS = ("writeDisposition", "createDisposition")


def parse_source_job(value: Any, field: str = SOURCE_FIELD) -> JobRef:
    """Exactly one job, in any form a job ID is accepted (incl. a submit task's XCom, rendered or not)."""
    refs = parse_job_refs(value, field=field)
    if len(refs) != 1:
        raise InvalidJobInput(field, f"names {len(refs)} jobs; a re-run repeats exactly one")
    return refs[0]


def parse_overrides(value: Any, field: str = OVERRIDES_FIELD) -> dict:
    """``None``, a dict, or JSON text of one (what a rendered template gives)."""
    if value is None:
        return {}
    return copy.deepcopy(json_object(value, field, "a dict of configuration fields"))


def deep_merge(base: Mapping, overrides: Mapping) -> dict:
    """``base`` with ``overrides`` applied: dicts merge recursively, ``None`` deletes, the rest replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def is_anonymous_table(table: Any) -> bool:
    """BigQuery's per-query result tables live in hidden datasets (``_`` + hash) as ``anon...`` tables."""
    if not isinstance(table, Mapping):
        return False
    return str(table.get("datasetId", "")).startswith("_") and str(table.get("tableId", "")).startswith("anon")


def resubmittable_configuration(job: Mapping, field: str = SOURCE_FIELD) -> dict:
    """The ``configuration`` of ``job`` (a REST job resource) without what BigQuery filled in."""
    ref = job.get("jobReference") or {}
    name = ref.get("jobId", "?")
    config = job.get("configuration")
    if not isinstance(config, Mapping) or not config:
        raise InvalidJobInput(
            field, f"job {name} has no configuration to repeat (is it another user's job, shown redacted?)"
        )
    config = {k: copy.deepcopy(v) for k, v in config.items() if k not in _SERVER_FILLED}
    kind = job_type(config, f"{field} configuration")
    body = config[kind]
    if kind == "query" and is_anonymous_table(body.get("destinationTable")):
        del body["destinationTable"]
        for key in _ANON_DISPOSITIONS:
            body.pop(key, None)
    if kind == "extract":
        _drop_singular_twin(body, "destinationUri", "destinationUris")
    if kind == "copy":
        _drop_singular_twin(body, "sourceTable", "sourceTables")
    labels = {k: v for k, v in (config.get("labels") or {}).items() if k not in AIRFLOW_LABEL_KEYS}
    if labels:
        config["labels"] = labels
    else:
        config.pop("labels", None)
    return config


def rerun_configuration(
    job: Mapping,
    overrides: Mapping | None = None,
    *,
    job_timeout_ms: int | None = None,
    field: str = SOURCE_FIELD,
) -> dict:
    """What to submit to repeat ``job``: its re-submittable configuration with ``overrides`` merged in.

    ``jobTimeoutMs``: the overrides' value if they set one; else ``job_timeout_ms`` (the re-run task's
    own execution_timeout) if given, replacing the old job's, which was sized for another task; else
    the old job's.
    """
    overrides = dict(overrides or {})
    config = deep_merge(resubmittable_configuration(job, field), overrides)
    if job_timeout_ms is not None and "jobTimeoutMs" not in overrides:
        config["jobTimeoutMs"] = str(int(job_timeout_ms))
    kind = job_type(config, f"{OVERRIDES_FIELD} (merged into the configuration of the source job)")
    if kind == "load" and not config["load"].get("sourceUris"):
        name = (job.get("jobReference") or {}).get("jobId", "?")
        raise InvalidJobInput(
            field,
            f"load job {name} took its data from an upload, which BigQuery does not keep: it cannot be"
            " repeated as is; set configuration_overrides={'load': {'sourceUris': [...]}} or upload the"
            " file again with BigQuerySubmitJobOperator(source_file=...)",
        )
    return config


def _drop_singular_twin(body: dict, singular: str, plural: str) -> None:
    if singular in body and plural in body and body[plural] == [body[singular]]:
        del body[singular]
