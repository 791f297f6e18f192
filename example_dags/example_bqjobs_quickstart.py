"""PLACEHOLDER quick-start DAG (to be replaced with the provider's operators).

One task inserts one query job (``SELECT 1``) with google-cloud-bigquery directly, under a job ID
derived from the run ID, so running the same DAG run again finds the job (HTTP 409 duplicate) and
reattaches to it instead of creating a second one. That is the behaviour the provider's operators
give; this file only exercises scripts/run_examples.py end to end until they land.

Connection-free on purpose: the project comes from GOOGLE_CLOUD_PROJECT (default "local", the
emulator's default project) and an emulator (BIGQUERY_EMULATOR_HOST) gets anonymous credentials.
"""

from __future__ import annotations

import hashlib
import os
import re

import pendulum

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG


def _client():
    from google.cloud import bigquery

    credentials = None
    if os.environ.get("BIGQUERY_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
    return bigquery.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "local"), credentials=credentials)


def _job_id(dag_id: str, task_id: str, run_id: str) -> str:
    """Letters, digits, '_' and '-' only; the hash keeps run IDs that sanitize alike apart."""
    digest = hashlib.sha256(f"{dag_id}\0{task_id}\0{run_id}".encode()).hexdigest()[:12]
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{dag_id}__{task_id}__{run_id}")[:200] + "__" + digest


def run_select_one(dag_run, task_instance, **_context):
    from google.api_core.exceptions import Conflict

    client = _client()
    job_id = _job_id(dag_run.dag_id, task_instance.task_id, dag_run.run_id)
    try:
        # job_retry=None: a failed job cannot be re-run under the same ID anyway.
        job = client.query("SELECT 1 AS one", job_id=job_id, job_retry=None)
        print(f"inserted job {job_id}")
    except Conflict:
        job = client.get_job(job_id)
        print(f"job {job_id} already exists ({job.state}): reattaching")
    rows = [tuple(row) for row in job.result()]
    print(f"job {job_id} done: {rows}")
    return job_id


with DAG(
    dag_id="example_bqjobs_quickstart",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "bqjobs"],
):
    PythonOperator(task_id="select_one", python_callable=run_select_one)
