"""BigQuery job labels: validate the user's, derive Airflow's, never drop one silently.

Rules (BigQuery): at most 64 labels; keys 1-63 characters, starting with a lowercase letter; keys and
values use lowercase letters (international ones too), digits, ``_`` and ``-``; values 0-63 characters.
User labels that break a rule are an error; Airflow's own values (dag, task, run ids) are sanitised, with
a short hash when shortened, so two long run ids never share a label value.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

from airflow_bqjobs.core.errors import InvalidJobInput

MAX_LABELS = 64
MAX_LENGTH = 63
DAG_LABEL = "airflow-dag"
TASK_LABEL = "airflow-task"
RUN_LABEL = "airflow-run"
MAP_INDEX_LABEL = "airflow-map-index"
AIRFLOW_LABEL_KEYS = (DAG_LABEL, TASK_LABEL, RUN_LABEL, MAP_INDEX_LABEL)
# Label values are never changed silently: a value that breaks the rules is an error with this hint.
SANITISE_HINT = (
    " To put a run ID, task ID or timestamp in a label, sanitise it as the provider's own airflow-*"
    " labels are: '{{ run_id | label_value }}' (a filter every airflow-bqjobs operator's templates"
    " have) or airflow_bqjobs.core.labels.sanitize_label_value(text)."
)


def _allowed(char: str) -> bool:
    return char in "_-" or char.isdigit() or (char.isalpha() and not char.isupper())


def sanitize_label_value(text: str) -> str:
    """Map any text to a valid label value; shortened values keep a hash of the original."""
    value = "".join(c if _allowed(c) else "_" for c in text.lower())
    if len(value) > MAX_LENGTH:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        value = f"{value[: MAX_LENGTH - 9]}-{digest}"
    return value


def airflow_labels(dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> dict[str, str]:
    """The labels that let users find (and purge) the jobs of a DAG run in BigQuery."""
    labels = {
        DAG_LABEL: sanitize_label_value(dag_id),
        TASK_LABEL: sanitize_label_value(task_id),
        RUN_LABEL: sanitize_label_value(run_id),
    }
    if map_index >= 0:
        labels[MAP_INDEX_LABEL] = str(map_index)
    return labels


def validate_labels(labels: Any, field: str = "labels") -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise InvalidJobInput(field, f"must be a dict of str to str, got {type(labels).__name__}")
    for key, value in labels.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_LENGTH:
            raise InvalidJobInput(field, f"key {key!r} must be a string of 1-{MAX_LENGTH} characters")
        if not (key[0].isalpha() and not key[0].isupper()) or not all(map(_allowed, key)):
            raise InvalidJobInput(
                field,
                f"key {key!r} must start with a lowercase letter and hold only lowercase letters, digits, '_' and '-'",
            )
        if not isinstance(value, str) or len(value) > MAX_LENGTH or not all(map(_allowed, value)):
            raise InvalidJobInput(
                field,
                f"value of {key!r} ({value!r}) must be a string of at most {MAX_LENGTH} lowercase letters,"
                f" digits, '_' or '-'.{SANITISE_HINT}",
            )
    if len(labels) > MAX_LABELS:
        raise InvalidJobInput(field, f"has {len(labels)} labels; BigQuery allows at most {MAX_LABELS}")
    return dict(labels)


def merge_labels(user: Mapping[str, str], airflow: Mapping[str, str], field: str = "labels") -> dict[str, str]:
    """User labels plus Airflow's; a clash or an overflow is an error, never a silent drop."""
    clash = sorted(set(user) & set(airflow))
    if clash:
        raise InvalidJobInput(field, f"{clash} are set by airflow-bqjobs itself; choose other keys")
    merged = {**user, **airflow}
    if len(merged) > MAX_LABELS:
        raise InvalidJobInput(
            field,
            f"{len(user)} labels plus the {len(airflow)} Airflow labels exceed BigQuery's {MAX_LABELS}",
        )
    return merged
