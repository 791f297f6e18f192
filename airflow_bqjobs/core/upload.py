"""Load jobs whose data is uploaded with the request (``jobs.insert`` through the upload URI).

Exactly-once holds as for every job: the upload *is* the insert, under a deterministic job ID, so a
retried task finds the job its earlier attempt uploaded and sends nothing again.

The file's identity enters that ID as its name (the path as given, after templating; a file object's
``name``, or ``<stream>``) and its size in bytes, never its content: hashing gigabytes on every
attempt would cost more than the load. Consequence, by design: a file rewritten in place with the
same size between two attempts of one task instance counts as the same upload (the retry follows the
earlier job); a file whose size changed is a new upload, hence a new job. Exactly ``size`` bytes are
sent, so the data loaded always matches the identity hashed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.core.job_config import job_type

FIELD = "source_file"
STREAM_NAME = "<stream>"


@dataclass(frozen=True)
class FileIdentity:
    """What identifies one upload across attempts: name and size (see the module docstring)."""

    name: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size}


def check_upload_configuration(configuration: Mapping, field: str = "configuration") -> None:
    """An upload needs a load job that names its destination and takes no data from elsewhere."""
    if job_type(configuration, field) != "load":
        raise InvalidJobInput(field, f"{FIELD} uploads data for a load job; give {{'load': {{...}}}}")
    load = configuration["load"]
    if load.get("sourceUris"):
        raise InvalidJobInput(f"{field}.load.sourceUris", f"must not be set with {FIELD}: the data comes from the file")
    table = load.get("destinationTable")
    if not isinstance(table, Mapping):
        raise InvalidJobInput(
            f"{field}.load.destinationTable", "is required: {'projectId'?, 'datasetId', 'tableId'}"
        )
    for key in ("datasetId", "tableId"):
        if not isinstance(table.get(key), str) or not table[key]:
            raise InvalidJobInput(f"{field}.load.destinationTable.{key}", "must be a non-empty string")
    if table.get("projectId") is not None and (not isinstance(table["projectId"], str) or not table["projectId"]):
        raise InvalidJobInput(f"{field}.load.destinationTable.projectId", "must be a non-empty string when given")


def job_id_input(configuration: Mapping, source: FileIdentity) -> dict[str, Any]:
    """What the job ID of an upload hashes: the configuration and the file's identity."""
    return {"configuration": configuration, FIELD: source.to_json()}
