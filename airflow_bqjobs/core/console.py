"""The Google Cloud console's page of a BigQuery job: what the "BigQuery Console" extra link opens.

The same URL form as the Google provider's ``BigQueryJobDetailLink`` (the console's workspace
state ``ws=!1m5!1m4!1m3!1s<project>!2s<job>!3s<location>``), so a team switching providers finds the
job where it used to. Every part is percent-encoded: a domain-scoped project (``example.com:proj``)
must not break the URL.
"""

from __future__ import annotations

from urllib.parse import quote

from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.core.job_ref import JobRef

CONSOLE_URL = "https://console.cloud.google.com/bigquery"


def job_console_url(ref: JobRef) -> str:
    """The console URL of a fully known job (project, location and ID)."""
    if not (ref.project_id and ref.location):
        raise InvalidJobInput("job", f"{ref} needs a project and a location for its console link")
    project, location, job_id = (quote(part, safe="") for part in (ref.project_id, ref.location, ref.job_id))
    return f"{CONSOLE_URL}?project={project}&ws=!1m5!1m4!1m3!1s{project}!2s{job_id}!3s{location}"
