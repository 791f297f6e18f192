"""The DAG tests/test_zombie_supervisor.py runs through Airflow's real Task SDK supervisor."""

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator

DAGS = {}
for dag_id in ("bqjobs_supervised_zombie", "bqjobs_supervised_marked"):
    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 3, 1, tz="UTC"), catchup=False) as dag:
        DAGS[dag_id] = dag
        BigQuerySubmitJobOperator(
            task_id="query", project_id="test-project", deferrable=False, poll_interval=0.2,
            configuration={"query": {"query": "SELECT 1", "useLegacySql": False}, "jobTimeoutMs": "600000"},
            retries=1, retry_delay=timedelta(minutes=5))
