"""OpenLineage for the operators that run a job (submit, rerun): ``get_openlineage_facets_on_complete``
and ``_on_failure``, read by ``apache-airflow-providers-openlineage`` after the task ran.

Built from the job resource the operator already holds (``on_job_done`` keeps it, in sync and
deferrable mode alike, for a new, reattached or already-succeeded job): no request per job; a
script's child jobs cost one ``jobs.list``. What the datasets are is :mod:`airflow_bqjobs.core.lineage`;
this module only turns it into OpenLineage objects, importing OpenLineage inside the call, so a DAG
file pays nothing for it and without the provider nothing here ever runs.
"""

from __future__ import annotations

from typing import Any

from airflow_bqjobs.core.lineage import BIGQUERY_NAMESPACE, JobLineage, is_script, job_lineage


class JobLineageMixin:
    """Keeps the job the task ended with and answers the OpenLineage provider's calls with it."""

    _lineage_job: dict | None = None

    def keep_for_lineage(self, job: dict) -> None:
        self._lineage_job = job

    def lineage_source_file(self) -> str | None:
        """An uploaded file's path, for a load job's input (the submit operator overrides this)."""
        return None

    def get_openlineage_facets_on_complete(self, task_instance: Any):
        return operator_lineage(self, self._lineage_job)

    def get_openlineage_facets_on_failure(self, task_instance: Any):
        return operator_lineage(self, self._lineage_job)


def _children(task: Any, job: dict) -> list[dict]:
    """A script's child jobs, with their configuration and statistics (one ``jobs.list``)."""
    if not is_script(job):
        return []
    ref = job["jobReference"]
    try:
        return list(task.make_hook().list_jobs(project_id=ref["projectId"], parent_job_id=ref["jobId"],
                                               all_users=True))
    except Exception as exc:  # lineage must never fail the task; say what is missing
        task.log.warning("OpenLineage: cannot list the child jobs of script %s (%s); their tables are left out",
                         ref["jobId"], exc)
        return []


def operator_lineage(task: Any, job: dict | None):
    from airflow.providers.openlineage.extractors import OperatorLineage

    if job is None:  # failed before any job was known (bad input, no credentials)
        return OperatorLineage()
    lineage = job_lineage(job, children=_children(task, job), uploaded_file=task.lineage_source_file())
    location = (job.get("jobReference") or {}).get("location")
    return _to_openlineage(lineage, location, OperatorLineage)


def _to_openlineage(lineage: JobLineage, location: str | None, operator_lineage_class):
    from airflow.providers.common.compat.openlineage.facet import (
        ErrorMessageRunFacet,
        ExternalQueryRunFacet,
        InputDataset,
        OutputDataset,
        SQLJobFacet,
    )

    from airflow_bqjobs.openlineage.facets import BigQueryJobRunFacet

    run_facets: dict[str, Any] = {
        "externalQuery": ExternalQueryRunFacet(externalQueryId=lineage.job_id, source=BIGQUERY_NAMESPACE),
        "bigQueryJob": BigQueryJobRunFacet(
            cached=bool(lineage.cache_hit), billedBytes=lineage.bytes_billed, processedBytes=lineage.bytes_processed,
            jobType=lineage.job_type, location=location,
        ),
    }
    if lineage.error:
        run_facets["errorMessage"] = ErrorMessageRunFacet(
            message=f"[{lineage.error.get('reason')}] {lineage.error.get('message')}",
            programmingLanguage="SQL" if lineage.job_type == "QUERY" else "BigQuery",
        )
    job_facets = {"sql": SQLJobFacet(query=lineage.sql)} if lineage.sql else {}
    return operator_lineage_class(
        inputs=[InputDataset(namespace=d.namespace, name=d.name) for d in lineage.inputs],
        outputs=[OutputDataset(namespace=d.namespace, name=d.name) for d in lineage.outputs],
        run_facets=run_facets,
        job_facets=job_facets,
    )
