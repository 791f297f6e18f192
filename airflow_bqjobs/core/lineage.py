"""What a finished BigQuery job read and wrote, named as OpenLineage names datasets (pure).

Read from the job resource the operator already holds (no request), plus, for a script, its child
jobs' resources. Names follow OpenLineage's naming spec, as the Google provider emits them, so that
lineage from both providers joins up: a table is namespace ``bigquery``, name
``project.dataset.table``; a Cloud Storage object is namespace ``gs://bucket``, name its path, with a
wildcard or a prefix naming its directory (``gs://b/dir/part-*.csv`` -> ``dir``); an uploaded local
file is namespace ``file``, name its absolute path.

* query: inputs ``statistics.query.referencedTables`` minus the destination; output the destination
  table, unless it is BigQuery's anonymous result table (``anon...`` in a hidden ``_...`` dataset), which
  nobody wants in a lineage graph; DDL targets (``statistics.query.ddlTargetTable``) count as
  outputs. A script's own resource names no tables: its child jobs' do.
* load: inputs ``sourceUris`` (or the uploaded file), output the destination table.
* copy: ``sourceTable`` / ``sourceTables`` to ``destinationTable``.
* extract: ``sourceTable`` (or a model) to ``destinationUris``.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from airflow_bqjobs.core.rerun import is_anonymous_table

BIGQUERY_NAMESPACE = "bigquery"
FILE_NAMESPACE = "file"


@dataclass(frozen=True)
class DatasetName:
    namespace: str
    name: str


@dataclass
class JobLineage:
    job_id: str
    job_type: str | None
    inputs: list[DatasetName] = field(default_factory=list)
    outputs: list[DatasetName] = field(default_factory=list)
    sql: str | None = None
    cache_hit: bool | None = None
    bytes_billed: int | None = None
    bytes_processed: int | None = None
    error: dict | None = None  # BigQuery's errorResult


def _get(source: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(source, Mapping):
            return None
        source = source.get(key)
    return source


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def table_dataset(table: Mapping) -> DatasetName:
    return DatasetName(BIGQUERY_NAMESPACE, f"{table.get('projectId')}.{table.get('datasetId')}.{table.get('tableId')}")


def gcs_dataset(uri: str) -> DatasetName | None:
    """``gs://bucket/path`` as OpenLineage names it; ``None`` for anything that is not a GCS URI."""
    if not uri.startswith("gs://"):
        return None
    bucket, _, path = uri[len("gs://"):].partition("/")
    return DatasetName(f"gs://{bucket}", _gcs_name(path))


def _gcs_name(path: str) -> str:
    """The object, or for a wildcard or a prefix, the directory holding the objects."""
    if "*" in path:
        path = path.split("*", 1)[0]
    last = posixpath.basename(path).rstrip(".")
    if "." not in last and not path.endswith("/"):
        path = posixpath.dirname(path)
    path = path.strip("/")
    return "/" if path in ("", ".") else path


def file_dataset(path: str) -> DatasetName:
    return DatasetName(FILE_NAMESPACE, os.path.abspath(path))


def _unique(items: Iterable[DatasetName | None]) -> list[DatasetName]:
    return list(dict.fromkeys(item for item in items if item is not None))


def _tables(tables: Iterable[Any]) -> list[DatasetName]:
    return [table_dataset(t) for t in tables if isinstance(t, Mapping) and not is_anonymous_table(t)]


def datasets_of(job: Mapping, *, uploaded_file: str | None = None) -> tuple[list[DatasetName], list[DatasetName]]:
    """(inputs, outputs) of one job resource."""
    config = job.get("configuration") or {}
    if "query" in config:
        destination = _get(config, "query", "destinationTable")
        written = [t for t in (destination, _get(job, "statistics", "query", "ddlTargetTable")) if t]
        read = [t for t in _get(job, "statistics", "query", "referencedTables") or [] if t not in written]
        return _unique(_tables(read)), _unique(_tables(written))
    if "load" in config:
        load = config["load"]
        sources = [gcs_dataset(uri) for uri in load.get("sourceUris") or [] if isinstance(uri, str)]
        if uploaded_file and not sources:
            sources = [file_dataset(uploaded_file)]
        return _unique(sources), _unique(_tables([load.get("destinationTable")]))
    if "copy" in config:
        copy = config["copy"]
        sources = copy.get("sourceTables") or [copy.get("sourceTable")]
        return _unique(_tables(sources)), _unique(_tables([copy.get("destinationTable")]))
    if "extract" in config:
        extract = config["extract"]
        uris = extract.get("destinationUris") or [extract.get("destinationUri")]
        return (_unique(_tables([extract.get("sourceTable")])),
                _unique(gcs_dataset(uri) for uri in uris if isinstance(uri, str)))
    return [], []


def is_script(job: Mapping) -> bool:
    return (_int(_get(job, "statistics", "numChildJobs")) or 0) > 0


def job_lineage(job: Mapping, *, children: Iterable[Mapping] = (), uploaded_file: str | None = None) -> JobLineage:
    """Everything the lineage events say about ``job`` (and, for a script, its ``children``)."""
    inputs, outputs = datasets_of(job, uploaded_file=uploaded_file)
    for child in children:
        child_inputs, child_outputs = datasets_of(child)
        inputs += child_inputs
        outputs += child_outputs
    outputs = _unique(outputs)
    inputs = [d for d in _unique(inputs) if d not in outputs]  # a table a script reads back is an output
    query = _get(job, "statistics", "query") or {}
    return JobLineage(
        job_id=str(_get(job, "jobReference", "jobId")),
        job_type=_get(job, "configuration", "jobType") or next(
            (kind.upper() for kind in ("query", "load", "copy", "extract") if kind in (job.get("configuration") or {})),
            None),
        inputs=inputs,
        outputs=outputs,
        sql=_get(job, "configuration", "query", "query"),
        cache_hit=query.get("cacheHit") if "cacheHit" in query else None,
        bytes_billed=_int(query.get("totalBytesBilled")),
        bytes_processed=_int(_get(job, "statistics", "totalBytesProcessed")),
        error=_get(job, "status", "errorResult"),
    )
