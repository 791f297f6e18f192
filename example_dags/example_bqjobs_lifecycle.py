"""Job lifecycle: every operator of airflow-bqjobs in one DAG run.

Run it against the local emulator with ``bash scripts/run_examples.sh``. The flow:

1. ``start_other_teams_jobs`` plays another team (or a ``bq`` user): it inserts two query jobs with
   google-cloud-bigquery directly, a quick ``report`` and a long ``runaway`` one. Their job IDs are
   derived from the run ID and a duplicate (HTTP 409) is reused, so they are exactly-once too.
2. ``wait_for_report`` (BigQueryJobSensor, deferrable) waits for the ``report`` job; it only reads it.
3. ``cancel_runaway`` (BigQueryCancelJobOperator, deferrable) cancels the ``runaway`` job and waits
   until it is DONE; its result says ``cancelled``, or ``succeeded`` if the job finished first.
4. ``load_events`` (BigQuerySubmitJobOperator with ``source_file``) uploads data/events.json into
   ``local.events``: the file travels with the job insert, so a retry never uploads twice.
5. ``count_events`` queries the table; ``recount_events`` (BigQueryRerunJobOperator) repeats that
   query job with a configuration override, as BigQuery's "repeat job" does.
6. ``list_run_jobs`` (BigQueryListJobsOperator) lists this DAG run's jobs by their Airflow labels;
   ``show_report_job`` (BigQueryGetJobOperator) reads the report job, like ``bq show -j``.
7. ``delete_runaway_metadata`` (BigQueryDeleteJobMetadataOperator) deletes the cancelled job's
   metadata from BigQuery's job history.

Running the same DAG run again reattaches every task to the jobs of the first run, with one
deliberate exception: deleting a job's metadata also deletes the record that made it exactly-once,
so the second run re-creates the ``runaway`` job (and cancels and deletes it again).

Connection-free for the "other team": the project comes from GOOGLE_CLOUD_PROJECT (default
"local", the emulator's default project) and, with BIGQUERY_EMULATOR_HOST set, the client uses
anonymous credentials and that endpoint. The operators use the ``google_cloud_default`` connection.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pendulum
from airflow import DAG
from airflow.providers.common.compat.sdk import task  # airflow.sdk on 3.x, airflow.decorators on 2.11

from airflow_bqjobs.operators import (
    BigQueryCancelJobOperator,
    BigQueryDeleteJobMetadataOperator,
    BigQueryGetJobOperator,
    BigQueryListJobsOperator,
    BigQueryRerunJobOperator,
    BigQuerySubmitJobOperator,
)
from airflow_bqjobs.sensors.job import BigQueryJobSensor

DAG_ID = "example_bqjobs_lifecycle"
EVENTS_FILE = Path(__file__).resolve().parent / "data" / "events.json"
EVENTS_TABLE = {"datasetId": "local", "tableId": "events"}  # local-bigquery's default dataset

# The other team's queries. On the emulator the runaway one stays RUNNING for about ten seconds.
OTHER_TEAMS_QUERIES = {
    "report": "SELECT 'emea' AS region, 42 AS total",
    "runaway": "SELECT COUNT(*) AS n FROM UNNEST(GENERATE_ARRAY(1, 10000000)) a",
}


def _bigquery_client():
    from google.cloud import bigquery

    credentials = None
    if os.environ.get("BIGQUERY_EMULATOR_HOST"):  # the client then sends requests there
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
    return bigquery.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "local"), credentials=credentials)


def _job_id(dag_id: str, name: str, run_id: str) -> str:
    """Letters, digits, '_' and '-' only; the hash keeps run IDs that sanitize alike apart."""
    digest = hashlib.sha256(f"{dag_id}\0{name}\0{run_id}".encode()).hexdigest()[:12]
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"other_team__{name}__{run_id}")[:200] + "__" + digest


@task(multiple_outputs=True)
def start_other_teams_jobs(dag_run=None) -> dict[str, dict]:
    """Insert the other team's jobs (once per DAG run); returns {name: jobReference}."""
    from google.api_core.exceptions import Conflict

    client = _bigquery_client()
    refs = {}
    for name, sql in OTHER_TEAMS_QUERIES.items():
        job_id = _job_id(dag_run.dag_id, name, dag_run.run_id)
        try:
            # job_retry=None: a failed job cannot be re-run under the same ID anyway.
            job = client.query(sql, job_id=job_id, job_retry=None)
            print(f"inserted the {name} job {job_id}")
        except Conflict:
            job = client.get_job(job_id)
            print(f"the {name} job {job_id} exists already ({job.state}): reusing it")
        refs[name] = {"projectId": job.project, "location": job.location, "jobId": job.job_id}
    client.close()
    return refs


with DAG(
    dag_id=DAG_ID,
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "poll_interval": 2.0},
    tags=["example", "bigquery"],
) as dag:
    other_teams = start_other_teams_jobs()

    # Someone else's job: the sensor only reads it, and never cancels it (not even on timeout).
    wait_for_report = BigQueryJobSensor(
        task_id="wait_for_report",
        job_id=other_teams["report"],
        deferrable=True,
        poke_interval=2.0,
        timeout=600,
    )

    # A cancel request is only a request: the result entry says "cancelled" if the job stopped, or
    # "succeeded"/"failed" if it finished first, which is not an error. The local emulator
    # (local-bigquery) accepts jobs.cancel but lets the query run to its end: there the result is
    # "succeeded", after the task waited (deferred) for the job to finish.
    cancel_runaway = BigQueryCancelJobOperator(
        task_id="cancel_runaway",
        job_id=other_teams["runaway"],
        wait=True,
        deferrable=True,
    )

    # Upload load: the file goes with the job insert (no GCS bucket needed).
    load_events = BigQuerySubmitJobOperator(
        task_id="load_events",
        configuration={
            "load": {
                "destinationTable": EVENTS_TABLE,
                "sourceFormat": "NEWLINE_DELIMITED_JSON",
                "schema": {
                    "fields": [
                        {"name": "event_id", "type": "INTEGER", "mode": "REQUIRED"},
                        {"name": "user", "type": "STRING"},
                        {"name": "event", "type": "STRING"},
                        {"name": "ts", "type": "TIMESTAMP"},
                    ]
                },
                "writeDisposition": "WRITE_TRUNCATE",
            }
        },
        source_file=str(EVENTS_FILE),
        deferrable=True,
    )

    count_events = BigQuerySubmitJobOperator(
        task_id="count_events",
        configuration={
            "query": {
                "query": "SELECT event, COUNT(*) AS n FROM local.events GROUP BY event ORDER BY event",
                "useLegacySql": False,
            }
        },
        deferrable=False,
    )

    # Repeat the count job (its configuration, read back from BigQuery), skipping the query cache.
    # None removes a key: the source job's result table. The operator drops BigQuery's anonymous
    # result tables (``_<hidden dataset>.anon...``) by itself, but the emulator names them
    # ``_results.<job id>``, which would make the repeat write into the first job's table (duplicate).
    recount_events = BigQueryRerunJobOperator(
        task_id="recount_events",
        source_job=count_events.output,
        configuration_overrides={"query": {"useQueryCache": False, "destinationTable": None}},
        labels={"repeated": "true"},
        deferrable=True,
    )

    # The jobs this DAG run's operators created, found by their airflow-dag / airflow-run labels
    # (the other team's jobs carry none). The raw IDs are sanitised as the labels were written.
    list_run_jobs = BigQueryListJobsOperator(
        task_id="list_run_jobs",
        airflow_dag_id="{{ dag.dag_id }}",
        airflow_run_id="{{ run_id }}",
        max_results=None,
    )

    # "View job details" (bq show -j): the report job's summary to XCom, without waiting.
    show_report_job = BigQueryGetJobOperator(task_id="show_report_job", job_id=other_teams["report"])

    # Job history clean-up: only DONE jobs can be deleted, so wait for the cancel to take effect.
    # This also erases the job's exactly-once record: a rerun of this DAG run inserts it again.
    delete_runaway_metadata = BigQueryDeleteJobMetadataOperator(
        task_id="delete_runaway_metadata",
        job_id=other_teams["runaway"],
        wait_for_done=True,
    )

    load_events >> count_events >> recount_events
    [wait_for_report, cancel_runaway, recount_events] >> list_run_jobs >> delete_runaway_metadata
    wait_for_report >> show_report_job
