"""What to ask ``jobs.list`` for, validated, and how to filter and summarise what it returns.

``jobs.list`` filters by owner, state, creation time and parent job on the server. It has no label
filter: labels are matched here, client-side, on the entries of the ``full`` projection.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.core.job_ref import parse_job_ref, validate_project_id
from airflow_bqjobs.core.labels import DAG_LABEL, RUN_LABEL, TASK_LABEL, sanitize_label_value, validate_labels
from airflow_bqjobs.core.summary import summarize_job

STATES = ("pending", "running", "done")
DEFAULT_MAX_RESULTS = 50  # what `bq ls -j` shows


@dataclass(frozen=True)
class JobListQuery:
    project_id: str | None = None
    all_users: bool = False
    states: tuple[str, ...] = ()
    min_creation_time_ms: int | None = None
    max_creation_time_ms: int | None = None
    max_results: int | None = DEFAULT_MAX_RESULTS
    parent_job_id: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def list_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``BigQueryJobsHook.list_jobs``; the label filter stays client-side."""
        return {
            "project_id": self.project_id,
            "all_users": self.all_users,
            "state_filter": self.states,
            "min_creation_time_ms": self.min_creation_time_ms,
            "max_creation_time_ms": self.max_creation_time_ms,
            # With a label filter, max_results counts matching jobs: page on until enough match.
            "max_results": None if self.labels else self.max_results,
            "parent_job_id": self.parent_job_id,
        }

    def select(self, entries: Iterable[Mapping]) -> list[dict]:
        """Compact summaries of the entries whose labels match, at most ``max_results``."""
        out: list[dict] = []
        for entry in entries:
            if labels_match(entry, self.labels):
                out.append(summarize_list_entry(entry))
                if self.max_results is not None and len(out) >= self.max_results:
                    break  # before the lazy listing asks for another page
        return out


def build_list_query(
    *,
    project_id: Any = None,
    all_users: Any = False,
    state_filter: Any = None,
    min_creation_time: Any = None,
    max_creation_time: Any = None,
    max_results: Any = DEFAULT_MAX_RESULTS,
    parent_job_id: Any = None,
    labels: Any = None,
    airflow_dag_id: Any = None,
    airflow_run_id: Any = None,
    airflow_task_id: Any = None,
) -> JobListQuery:
    """Validate every filter, raising :class:`InvalidJobInput` naming the first bad one."""
    if not isinstance(all_users, bool):
        raise InvalidJobInput("all_users", f"must be True or False, got {all_users!r}")
    low = to_epoch_ms(min_creation_time, "min_creation_time")
    high = to_epoch_ms(max_creation_time, "max_creation_time")
    if low is not None and high is not None and low > high:
        raise InvalidJobInput("min_creation_time", f"({low} ms) is after max_creation_time ({high} ms)")
    return JobListQuery(
        project_id=validate_project_id(project_id),
        all_users=all_users,
        states=parse_states(state_filter),
        min_creation_time_ms=low,
        max_creation_time_ms=high,
        max_results=validate_max_results(max_results),
        parent_job_id=None if parent_job_id is None else parse_job_ref(parent_job_id, field="parent_job_id").job_id,
        labels=with_airflow_filter(
            validate_labels(labels, "labels"),
            airflow_dag_id=airflow_dag_id,
            airflow_run_id=airflow_run_id,
            airflow_task_id=airflow_task_id,
        ),
    )


AIRFLOW_FILTERS = {"airflow_dag_id": DAG_LABEL, "airflow_run_id": RUN_LABEL, "airflow_task_id": TASK_LABEL}


def airflow_filter_value(value: Any, field: str) -> str | None:
    """An Airflow id to find jobs by, as the provider writes it into its ``airflow-*`` label."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidJobInput(field, f"must be a non-empty string, got {value!r}")
    return sanitize_label_value(value)


def with_airflow_filter(labels: Mapping[str, str], **ids: Any) -> dict[str, str]:
    """``labels`` plus the ``airflow-dag`` / ``airflow-run`` / ``airflow-task`` values of the ids given.

    The ids are sanitised exactly as the submit operator sanitises them into its labels, so
    ``airflow_run_id="manual__2025-01-01T00:00:00+00:00"`` finds that run's jobs.
    """
    merged = dict(labels)
    for field_name, value in ids.items():
        wanted = airflow_filter_value(value, field_name)
        if wanted is None:
            continue
        key = AIRFLOW_FILTERS[field_name]
        if key in merged and merged[key] != wanted:
            raise InvalidJobInput(
                field_name, f"{value!r} (label {key}={wanted!r}) contradicts labels[{key!r}]={merged[key]!r}"
            )
        merged[key] = wanted
    return merged


def parse_states(value: Any, field: str = "state_filter") -> tuple[str, ...]:
    """``"running"``, ``["pending", "RUNNING"]`` or ``"pending,running"`` -> ``("pending", "running")``."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, Iterable) or isinstance(items, Mapping):
        raise InvalidJobInput(field, f"must be a state name or a list of them, got {type(value).__name__}")
    states: list[str] = []
    for item in items:
        name = item.strip().lower() if isinstance(item, str) else item
        if name not in STATES:
            raise InvalidJobInput(field, f"{item!r} is not a job state; expected some of {', '.join(STATES)}")
        if name not in states:
            states.append(name)
    return tuple(states)


def to_epoch_ms(value: Any, field: str) -> int | None:
    """Milliseconds since the epoch from an int, a digit string, an aware datetime or ISO-8601 text.

    Templated values arrive as text: ``{{ data_interval_start }}`` renders as ISO-8601.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidJobInput(field, f"must be epoch milliseconds or a datetime, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            value = int(text)
        else:
            try:
                value = datetime.fromisoformat(text)
            except ValueError:
                raise InvalidJobInput(
                    field, f"{value!r} is neither epoch milliseconds nor an ISO-8601 timestamp"
                ) from None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidJobInput(field, f"{value.isoformat()} has no time zone; pass an aware datetime (UTC?)")
        return int(value.timestamp() * 1000)
    if isinstance(value, int) and value >= 0:
        return value
    raise InvalidJobInput(field, f"must be non-negative epoch milliseconds or a datetime, got {value!r}")


def validate_max_results(value: Any, field: str = "max_results") -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidJobInput(field, f"must be a positive integer (or None for no limit), got {value!r}")
    return value


def entry_labels(entry: Mapping) -> dict[str, str]:
    return dict((entry.get("configuration") or {}).get("labels") or {})


def labels_match(entry: Mapping, wanted: Mapping[str, str]) -> bool:
    """Every wanted key is present with exactly that value (an empty filter matches everything)."""
    labels = entry_labels(entry)
    return all(labels.get(key) == value for key, value in wanted.items())


def summarize_list_entry(entry: Mapping) -> dict[str, Any]:
    """:func:`summarize_job` plus who ran it and its parent script (list entries carry both)."""
    summary = summarize_job(entry)
    summary["user_email"] = entry.get("user_email")
    summary["parent_job_id"] = (entry.get("statistics") or {}).get("parentJobId")
    return summary
