"""The "BigQuery Console" extra link of every operator that submits or follows one job.

The operator stores the finished URL in XCom (key :data:`CONSOLE_LINK_XCOM_KEY`) as soon as the job
is known, before it waits or defers, so the link works while the task is deferred. That is Airflow
3's ``xcom_key`` mechanism: the API server reads the URL stored under the link's ``xcom_key`` without
importing this class (the task runner re-stores :meth:`get_link`'s answer when the try ends, hence
``get_link`` returns the stored URL itself). Airflow 2.11's webserver imports the class (registered in
``get_provider_info`` ``extra-links``) and calls :meth:`get_link`, which reads the same XCom.
Imports nothing heavy: operators declare the link at DAG-parse time.
"""

from __future__ import annotations

from typing import Any

from airflow_bqjobs._compat import BaseOperatorLink, xcom_value
from airflow_bqjobs.core.console import CONSOLE_URL, job_console_url
from airflow_bqjobs.core.job_ref import JobRef, parse_job_ref

CONSOLE_LINK_XCOM_KEY = "bigquery_console_link"


class BigQueryConsoleLink(BaseOperatorLink):
    """The job's page in the Google Cloud console."""

    name = "BigQuery Console"
    xcom_key = CONSOLE_LINK_XCOM_KEY

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        url = xcom_value(ti_key, self.xcom_key)
        return url if isinstance(url, str) and url.startswith(CONSOLE_URL) else ""


def persist_console_link(context: Any, job: dict | JobRef) -> None:
    """Store the console URL of ``job`` (a job resource, or a complete reference) for the task's link."""
    ref = job if isinstance(job, JobRef) else parse_job_ref(job["jobReference"], field="jobReference")
    context["ti"].xcom_push(key=CONSOLE_LINK_XCOM_KEY, value=job_console_url(ref))


def has_console_link(task: Any) -> bool:
    return any(isinstance(link, BigQueryConsoleLink) for link in getattr(task, "operator_extra_links", ()))
