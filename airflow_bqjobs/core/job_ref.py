"""Job references: every place that names a job accepts the same forms, parsed here.

Accepted: ``job_id``, ``LOCATION.job_id``, ``project:LOCATION.job_id`` (what the console prints),
``project:job_id`` (what ``bq ls -j`` and ``bq show -j`` print: no location, which then comes from an
explicit ``location`` or the connection), ``project:location:job_id`` (the Google provider's
``job_id_path`` XCom), a REST ``jobReference`` dict (``{"projectId", "location",
"jobId"}``, what the submit operator returns), or a :class:`JobRef`. As ``bq`` does, the location
inside a full ID wins over an explicit ``location``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Mapping

from airflow_bqjobs.core.errors import InvalidJobInput

MAX_JOB_ID_LENGTH = 1024
_JOB_ID_RE = re.compile(r"[A-Za-z0-9_-]+")
# Regions and multi-regions: "US", "EU", "asia-northeast1", "us-central1".
_LOCATION_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
# Project IDs, including legacy domain-scoped ones ("example.com:my-project").
_PROJECT_RE = re.compile(r"(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]*[a-z0-9]|[a-z]")

_FORMS = "expected 'job_id', 'LOCATION.job_id', 'project:job_id' or 'project:LOCATION.job_id'"


@dataclass(frozen=True)
class JobRef:
    """A BigQuery job's identity. ``project_id``/``location`` may be unknown until the hook fills them."""

    job_id: str
    project_id: str | None = None
    location: str | None = None

    @property
    def full_id(self) -> str:
        """``project:LOCATION.job_id`` as far as known, the form users paste into ``bq show -j``."""
        text = f"{self.location}.{self.job_id}" if self.location else self.job_id
        return f"{self.project_id}:{text}" if self.project_id else text

    def to_api(self) -> dict[str, str]:
        """The REST ``jobReference`` (JSON-serialisable: safe for XCom and trigger kwargs)."""
        api = {"projectId": self.project_id, "location": self.location, "jobId": self.job_id}
        return {k: v for k, v in api.items() if v}

    def with_defaults(self, project_id: str | None, location: str | None) -> JobRef:
        """Fill what the reference did not say; never override what it did."""
        return replace(self, project_id=self.project_id or project_id, location=self.location or location)

    def with_job_id(self, job_id: str) -> JobRef:
        return replace(self, job_id=job_id)

    def __str__(self) -> str:
        return self.full_id


def validate_job_id(job_id: Any, field: str = "job_id") -> str:
    """Return ``job_id`` if BigQuery would accept it, else raise :class:`InvalidJobInput` naming ``field``."""
    if not isinstance(job_id, str) or not job_id:
        raise InvalidJobInput(field, f"must be a non-empty string, got {job_id!r}")
    if len(job_id) > MAX_JOB_ID_LENGTH:
        raise InvalidJobInput(field, f"is {len(job_id)} characters long; BigQuery allows at most {MAX_JOB_ID_LENGTH}")
    if not _JOB_ID_RE.fullmatch(job_id):
        bad = sorted({c for c in job_id if not _JOB_ID_RE.fullmatch(c)})
        raise InvalidJobInput(
            field, f"{job_id[:80]!r} contains {''.join(bad)!r}; only letters, digits, '_' and '-' are allowed"
        )
    return job_id


def validate_location(location: Any, field: str = "location") -> str | None:
    if location is None:
        return None
    if not isinstance(location, str) or not _LOCATION_RE.fullmatch(location):
        raise InvalidJobInput(field, f"{location!r} is not a BigQuery location such as 'US', 'EU' or 'asia-northeast1'")
    return location


def validate_project_id(project_id: Any, field: str = "project_id") -> str | None:
    if project_id is None:
        return None
    if not isinstance(project_id, str) or not _PROJECT_RE.fullmatch(project_id):
        raise InvalidJobInput(field, f"{project_id!r} is not a valid Google Cloud project ID")
    return project_id


def parse_job_ref(
    value: Any, *, project_id: str | None = None, location: str | None = None, field: str = "job_id"
) -> JobRef:
    """Parse any accepted form into a validated :class:`JobRef`, filling gaps from the explicit arguments."""
    validate_project_id(project_id, "project_id")
    validate_location(location, "location")
    if isinstance(value, JobRef):
        ref = value
    elif isinstance(value, Mapping):
        ref = _from_mapping(value, field)
    elif isinstance(value, str):
        ref = _from_text(value.strip(), field)
    else:
        raise InvalidJobInput(field, f"{_FORMS} or a jobReference dict, got {type(value).__name__}")
    validate_job_id(ref.job_id, field)
    validate_project_id(ref.project_id, f"{field} (project part)")
    validate_location(ref.location, f"{field} (location part)")
    return ref.with_defaults(project_id, location)


def _from_mapping(value: Mapping, field: str) -> JobRef:
    job_id = value.get("jobId", value.get("job_id"))
    if job_id is None:
        raise InvalidJobInput(field, f"a job reference dict needs 'jobId', got keys {sorted(value)}")
    project_id = value.get("projectId", value.get("project_id"))
    location = value.get("location")
    for part, text in (("project", project_id), ("location", location)):
        if isinstance(text, str) and not text.strip():
            # An empty part must not silently become the hook's default project or location.
            raise InvalidJobInput(f"{field} ({part} part)", f"is empty; leave it out to use the default {part}")
    return JobRef(job_id=job_id, project_id=project_id, location=location)


def _split_google_path(project: str) -> tuple[str, str | None]:
    """``project:location`` (the Google provider's ``job_id_path`` XCom, ``project:location:job_id``)
    apart from a domain-scoped project (``example.com:project``, the one form with a ``.`` before a
    single ``:``)."""
    if ":" not in project:
        return project, None
    rest, _, location = project.rpartition(":")
    if ":" not in rest and "." in rest:
        return project, None
    return rest, location


def _from_text(text: str, field: str) -> JobRef:
    project = None
    path_location = None
    if ":" in text:
        project, _, text = text.rpartition(":")
        if not project:
            raise InvalidJobInput(field, f"the project part before ':' is empty; {_FORMS}")
        if not text:
            raise InvalidJobInput(field, f"the job ID after ':' is empty; {_FORMS}")
        project, path_location = _split_google_path(project)
        if path_location is not None:
            if "." in text:
                raise InvalidJobInput(field, f"names two locations ({path_location!r} and the one before '.'); {_FORMS}")
            return JobRef(job_id=text, project_id=project, location=path_location)
    if "." in text:
        location, _, job_id = text.partition(".")
        if not location:
            raise InvalidJobInput(field, f"the location part before '.' is empty; {_FORMS}")
        if not job_id:
            raise InvalidJobInput(field, f"the job ID after '.' is empty; {_FORMS}")
        if "." in job_id:
            raise InvalidJobInput(field, f"{text!r} has more than one '.'; {_FORMS}")
        return JobRef(job_id=job_id, project_id=project, location=location)
    return JobRef(job_id=text, project_id=project)


def ref_of_job(job: Mapping | None, fallback: JobRef) -> JobRef:
    """The job's own reference (BigQuery fills in the location), else ``fallback``: what logs and errors name.

    One format for a job everywhere: ``project:LOCATION.job_id`` once BigQuery has said where it runs.
    """
    reference = (job or {}).get("jobReference")
    if not isinstance(reference, Mapping) or not reference.get("jobId"):
        return fallback
    return parse_job_ref(reference, field="jobReference").with_defaults(fallback.project_id, fallback.location)
