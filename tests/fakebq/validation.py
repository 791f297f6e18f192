"""Request checks BigQuery does before accepting a job.

A fake that accepted what the real service rejects would hide bugs in the
code under test (bad deterministic job ids, bad labels), so these are strict.
"""

from __future__ import annotations

import re

from .api_errors import invalid

JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,1024}$")
CONFIG_KINDS = ("query", "load", "copy", "extract")
MAX_LABELS = 64


def check_job_id(job_id: object) -> str:
    if not isinstance(job_id, str) or not JOB_ID_RE.match(job_id):
        raise invalid(
            f"Invalid job ID \"{job_id}\". Job IDs must be alphanumeric (plus underscores and "
            "dashes) and must be at most 1024 characters long."
        )
    return job_id


def job_type_of(configuration: object) -> str:
    """QUERY/LOAD/COPY/EXTRACT; the configuration must hold exactly one kind."""
    if not isinstance(configuration, dict):
        raise invalid("Required parameter is missing: configuration")
    kinds = [k for k in CONFIG_KINDS if k in configuration]
    if len(kinds) != 1:
        raise invalid(
            "Job configuration must contain exactly one job-specific configuration object "
            f"(e.g., query, load, extract, copy); found {kinds or 'none'}"
        )
    if not isinstance(configuration[kinds[0]], dict):
        raise invalid(f"configuration.{kinds[0]} must be an object")
    if kinds[0] == "query" and not configuration["query"].get("query"):
        raise invalid("Required parameter is missing: query")
    return kinds[0].upper()


def _is_lower_letter(ch: str) -> bool:
    # Lowercase or caseless letters (international letters are allowed).
    return ch.isalpha() and not ch.isupper()


def _label_char_ok(ch: str) -> bool:
    return _is_lower_letter(ch) or ch.isdigit() or ch in "_-"


def check_labels(labels: object) -> dict:
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise invalid("labels must be an object")
    if len(labels) > MAX_LABELS:
        raise invalid(f"Too many labels: {len(labels)} (at most {MAX_LABELS})")
    for key, value in labels.items():
        if not (1 <= len(key) <= 63) or not _is_lower_letter(key[0]) or not all(map(_label_char_ok, key)):
            raise invalid(
                f"Invalid label key \"{key}\": keys must be 1-63 characters, start with a lowercase "
                "letter, and contain only lowercase letters, digits, underscores and dashes."
            )
        if not isinstance(value, str) or len(value) > 63 or not all(map(_label_char_ok, value)):
            raise invalid(
                f"Invalid label value \"{value}\" for key \"{key}\": values must be at most 63 "
                "characters of lowercase letters, digits, underscores and dashes."
            )
    return labels
