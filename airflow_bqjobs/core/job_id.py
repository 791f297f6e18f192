"""Deterministic job IDs: the heart of exactly-once.

Every attempt of one task instance derives the same ID, so a retry finds the job its earlier attempt
started (BigQuery refuses a second job under that ID with a 409). The ID is
``{prefix}_{dag}_{task}_{run}[_m{map_index}]_{hash}``: the readable parts are sanitised and shortened
for humans; the 80-bit hash is taken over the raw, unsanitised inputs, so inputs that sanitise to the
same text (``a.b`` vs ``a_b``) still get different IDs. Generations (``_1``, ``_2``, ...) name the
re-runs that replace a failed job: BigQuery never re-runs a job under its old ID.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.core.job_ref import validate_job_id

DEFAULT_PREFIX = "airflow"
MAX_PREFIX_LENGTH = 128
_PART_LENGTH = 120  # each readable part; the whole ID stays far below BigQuery's 1,024
_HASH_HEX = 20
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
# Bump only with a migration note: changing the derivation makes in-flight retries start new jobs.
_DERIVATION_VERSION = 1


@dataclass(frozen=True)
class RunIdentity:
    """What identifies one task instance's job request across retries.

    ``rerun_key`` changes only when a user deliberately clears the task or its DAG run (see
    :func:`airflow_bqjobs.context.run_identity`); it is ``None`` when clears should reattach too.
    """

    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1
    rerun_key: str | None = None


def canonical_json(value: Any, field: str = "configuration") -> str:
    """Stable JSON text of ``value``; a value that is not plain JSON is a user error, named."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidJobInput(field, f"must be JSON-serialisable (plain dicts, lists, strings, numbers): {exc}") from None


def validate_prefix(prefix: Any, field: str = "job_id_prefix") -> str:
    if prefix is None:
        return DEFAULT_PREFIX
    if not isinstance(prefix, str) or len(prefix) > MAX_PREFIX_LENGTH:
        raise InvalidJobInput(field, f"must be a string of at most {MAX_PREFIX_LENGTH} characters")
    validate_job_id(prefix, field)
    return prefix


def derive_job_id(identity: RunIdentity, configuration: Any, prefix: str | None = None) -> str:
    """The generation-0 job ID for ``identity`` running ``configuration`` (the rendered REST configuration)."""
    prefix = validate_prefix(prefix)
    digest_input = canonical_json(
        [
            _DERIVATION_VERSION,
            prefix,
            identity.dag_id,
            identity.task_id,
            identity.run_id,
            identity.map_index,
            identity.rerun_key,
            configuration,
        ]
    )
    digest = hashlib.sha256(digest_input.encode()).hexdigest()[:_HASH_HEX]
    parts = [prefix, _readable(identity.dag_id), _readable(identity.task_id), _readable(identity.run_id)]
    if identity.map_index >= 0:
        parts.append(f"m{identity.map_index}")
    parts.append(digest)
    return validate_job_id("_".join(parts))


def generation_job_id(base_job_id: str, generation: int) -> str:
    """ID of the ``generation``-th re-run of ``base_job_id`` (0 is the base itself).

    A base ID always ends in hex digits, so ``base_1`` can never equal another input's base ID.
    """
    if generation < 0:
        raise ValueError("generation must be >= 0")
    return base_job_id if generation == 0 else validate_job_id(f"{base_job_id}_{generation}")


def _readable(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_")[:_PART_LENGTH] or "x"
