"""Quick start: exactly-once BigQuery jobs.

Run it against the local emulator with ``bash scripts/run_examples.sh``: every task's job ID is
derived from (dag, task, run, map index, rendered configuration), so running the same DAG run a
second time reattaches to the jobs of the first run and creates none.
"""

from __future__ import annotations

import pendulum
from airflow import DAG

from airflow_bqjobs.operators import BigQuerySubmitJobOperator

with DAG(
    dag_id="example_bqjobs_quickstart",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "poll_interval": 2.0},
    tags=["example", "bigquery"],
) as dag:
    # Deferrable: the task frees its worker slot while BigQuery works; the triggerer waits.
    build_totals = BigQuerySubmitJobOperator(
        task_id="build_daily_totals",
        configuration={"query": {"query": "sql/daily_totals.sql", "useLegacySql": False}},
        labels={"team": "analytics"},
        deferrable=True,
    )

    # Sync: polls in the worker.
    check_totals = BigQuerySubmitJobOperator(
        task_id="check_daily_totals",
        configuration={"query": {"query": "SELECT COUNT(*) AS regions FROM local.daily_totals", "useLegacySql": False}},
        deferrable=False,
    )

    # Mapped: one job per map index, each with its own deterministic ID. A run ID is no valid label
    # value as it is: the label_value filter sanitises it as the provider's own airflow-run label.
    per_region = BigQuerySubmitJobOperator.partial(
        task_id="per_region", deferrable=True, labels={"run": "{{ run_id | label_value }}"}
    ).expand(
        configuration=[
            {"query": {"query": f"SELECT total FROM local.daily_totals WHERE region = '{region}'", "useLegacySql": False}}
            for region in ("emea", "apac")
        ]
    )

    build_totals >> check_totals >> per_region
