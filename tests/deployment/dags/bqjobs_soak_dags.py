"""The DAG of the CeleryExecutor soak (tests/deployment/test_celery_soak.py), against fakebq.

One DAG run holds ``TIS_PER_RUN`` (16) task instances, all independent (so marking one failed or
clearing one touches no other): mapped BigQuerySubmitJobOperator tasks, sync and deferrable, running
query, load and copy jobs. Durations are seconds on the fake's clock, which the soak runs faster than
real time (``SOAK_CLOCK_SCALE`` in the test): queries carry them in their ``/* fakebq: */`` directive,
load and copy jobs get the fake's default ``running_s`` set by the test. The soak driver makes some
jobs fail once (fake rules matching one task instance's labels), so ``retries`` covers those, the
killed workers' zombies and stalled triggerers.

The connection ``bqjobs_fake`` comes from the environment (``AIRFLOW_CONN_BQJOBS_FAKE``).
"""

from __future__ import annotations

import json
from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator

DAG_ID = "bqjobs_soak"
CONN_ID = "bqjobs_fake"
PROJECT = "test-project"


def _query(seconds: int, n: int) -> dict:
    return {"query": {"query": f"/* fakebq: {json.dumps({'running_s': seconds})} */ SELECT {n} AS n",
                      "useLegacySql": False}}


def _table(table_id: str) -> dict:
    return {"projectId": PROJECT, "datasetId": "soak", "tableId": table_id}


QUERY_DEFER = [_query(20 + 5 * i, i) for i in range(8)]  # 20..55 s
QUERY_SYNC = [_query(20 + 10 * i, 100 + i) for i in range(3)]  # 20..40 s
LOADS = [{"load": {"sourceUris": [f"gs://bqjobs-soak/part-{i}.csv"], "sourceFormat": "CSV",
                   "destinationTable": _table(f"load_{i}"), "writeDisposition": "WRITE_TRUNCATE"}} for i in range(3)]
COPIES = [{"copy": {"sourceTable": _table(f"load_{i}"), "destinationTable": _table(f"copy_{i}"),
                    "writeDisposition": "WRITE_TRUNCATE"}} for i in range(2)]
TASKS = {"query_defer": QUERY_DEFER, "query_sync": QUERY_SYNC, "load_defer": LOADS, "copy_sync": COPIES}
DEFERRABLE = {"query_defer": True, "query_sync": False, "load_defer": True, "copy_sync": False}
TIS_PER_RUN = sum(map(len, TASKS.values()))

with DAG(
    dag_id=DAG_ID,
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=64,
    max_active_tasks=64,
    tags=["bqjobs", "soak"],
    default_args={"retries": 4, "retry_delay": timedelta(seconds=3)},
):
    for task_id, configurations in TASKS.items():
        BigQuerySubmitJobOperator.partial(
            task_id=task_id, gcp_conn_id=CONN_ID, deferrable=DEFERRABLE[task_id], poll_interval=3.0,
        ).expand(configuration=configurations)
