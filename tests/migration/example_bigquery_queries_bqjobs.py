"""The Google provider's own BigQuery example DAG, ``bigquery_queries``
(``providers/google/tests/system/google/cloud/bigquery/example_bigquery_queries.py`` in
apache/airflow), rewritten with this provider: every ``BigQueryInsertJobOperator`` becomes a
``BigQuerySubmitJobOperator`` with the same ``configuration``; the dataset and table operators become
DDL jobs, the check operators become ``ASSERT`` statements, so the whole DAG is BigQuery jobs and
each of them runs exactly once, however often a task is retried. What changed, task by task:

* ``create_dataset`` / ``create_table_*`` / ``delete_dataset``: ``CREATE SCHEMA``, ``CREATE TABLE``,
  ``DROP SCHEMA ... CASCADE`` queries (no dataset/table operators here: this provider runs jobs).
* ``insert_query_job``, ``select_query_job``, ``execute_insert_query``, ``execute_query_save``: the
  same configurations; ``{% include QUERY_SQL_PATH %}`` works as before (``template_searchpath``).
* ``execute_multi_query``: Google's hook accepts a list of statements; BigQuery's REST API takes
  one string, so the two statements are one script (its child jobs show in the console link).
* ``check_count`` / ``check_value``: ``ASSERT`` statements, which fail the job, hence the task,
  when they do not hold. ``get_data``, ``check_interval``, ``column_check`` and ``table_check``
  read table data rather than run a job, which this provider does not do: they are left out.

Run against the fake in tests/test_migration_example.py.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.providers.common.compat.sdk import DAG, TriggerRule  # airflow.sdk on 3.x, airflow.models on 2.11

from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator

ENV_ID = os.environ.get("SYSTEM_TESTS_ENV_ID", "default")
PROJECT_ID = os.environ.get("SYSTEM_TESTS_GCP_PROJECT", "test-project")
LOCATION = "us-east1"
QUERY_SQL_PATH = "example_bigquery_query.sql"

TABLE_1 = "table1"
TABLE_2 = "table2"
SCHEMA_DDL = "value INT64 NOT NULL, name STRING, ds DATE"

DAG_ID = "bigquery_queries_bqjobs"
DATASET_NAME = f"dataset_{DAG_ID}_{ENV_ID}"
INSERT_DATE = "2030-01-01"
INSERT_ROWS_QUERY = (
    f"INSERT {DATASET_NAME}.{TABLE_1} VALUES "
    f"(42, 'monty python', '{INSERT_DATE}'), "
    f"(42, 'fishy fish', '{INSERT_DATE}');"
)


def query(sql: str, **options) -> dict:
    return {"query": {"query": sql, "useLegacySql": False, **options}}


with DAG(
    DAG_ID,
    schedule="@once",
    start_date=datetime(2021, 1, 1),
    catchup=False,
    tags=["example", "bigquery"],
    user_defined_macros={"DATASET": DATASET_NAME, "TABLE": TABLE_1, "QUERY_SQL_PATH": QUERY_SQL_PATH},
    template_searchpath=[str(Path(__file__).parent / "sql")],
    # Google's example names LOCATION but passes it nowhere; here every job runs there.
    default_args={"location": LOCATION, "project_id": PROJECT_ID, "retries": 2},
) as dag:
    create_dataset = BigQuerySubmitJobOperator(
        task_id="create_dataset",
        configuration=query(f"CREATE SCHEMA IF NOT EXISTS {DATASET_NAME} OPTIONS (location = '{LOCATION}')"),
    )
    create_table_1 = BigQuerySubmitJobOperator(
        task_id="create_table_1",
        configuration=query(f"CREATE TABLE IF NOT EXISTS {DATASET_NAME}.{TABLE_1} ({SCHEMA_DDL})"),
    )
    create_table_2 = BigQuerySubmitJobOperator(
        task_id="create_table_2",
        configuration=query(f"CREATE TABLE IF NOT EXISTS {DATASET_NAME}.{TABLE_2} ({SCHEMA_DDL})"),
    )

    insert_query_job = BigQuerySubmitJobOperator(
        task_id="insert_query_job",
        configuration=query(INSERT_ROWS_QUERY, priority="BATCH"),
    )
    select_query_job = BigQuerySubmitJobOperator(
        task_id="select_query_job",
        configuration=query("{% include QUERY_SQL_PATH %}"),
    )
    execute_insert_query = BigQuerySubmitJobOperator(
        task_id="execute_insert_query",
        configuration=query(INSERT_ROWS_QUERY),
    )
    execute_query_save = BigQuerySubmitJobOperator(
        task_id="execute_query_save",
        configuration=query(
            f"SELECT * FROM {DATASET_NAME}.{TABLE_1}",
            destinationTable={"projectId": PROJECT_ID, "datasetId": DATASET_NAME, "tableId": TABLE_2},
        ),
    )
    bigquery_execute_multi_query = BigQuerySubmitJobOperator(
        task_id="execute_multi_query",
        configuration=query(
            f"SELECT * FROM {DATASET_NAME}.{TABLE_2};\nSELECT COUNT(*) FROM {DATASET_NAME}.{TABLE_2};"
        ),
        deferrable=True,  # waits in the triggerer, no worker slot held
    )
    check_count = BigQuerySubmitJobOperator(
        task_id="check_count",
        configuration=query(f"ASSERT (SELECT COUNT(*) FROM {DATASET_NAME}.{TABLE_1}) > 0 AS 'table1 is empty'"),
    )
    check_value = BigQuerySubmitJobOperator(
        task_id="check_value",
        configuration=query(f"ASSERT (SELECT COUNT(*) FROM {DATASET_NAME}.{TABLE_1}) = 4 AS 'expected 4 rows'"),
    )
    delete_dataset = BigQuerySubmitJobOperator(
        task_id="delete_dataset",
        configuration=query(f"DROP SCHEMA IF EXISTS {DATASET_NAME} CASCADE"),
        trigger_rule=TriggerRule.ALL_DONE,
    )

    create_dataset >> [create_table_1, create_table_2]
    [create_table_1, create_table_2] >> insert_query_job >> [select_query_job, execute_insert_query]
    execute_insert_query >> execute_query_save >> bigquery_execute_multi_query >> delete_dataset
    execute_insert_query >> [check_count, check_value] >> delete_dataset
