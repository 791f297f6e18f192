"""DAGs for tests/deployment/test_kill_without_on_kill.py (one deferrable submit task each, as in
bqjobs_deployment_dags.py, whose connection and ``/* fakebq: ... */`` directives they share):

* ``bqjobs_deploy_state_kill``: runs "forever"; a cancel request stops it after 1 s. Marked failed
  on an Airflow without trigger ``on_kill`` (< 3.3).
* ``bqjobs_deploy_graceful_restart``: runs "forever"; the triggerer is stopped (SIGTERM) and a new one
  started; the test ends the job by advancing the fake's clock.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pendulum
from airflow import DAG

from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator

SCENARIOS = {
    "bqjobs_deploy_state_kill": {"running_s": 3600, "cancel_s": 1},
    "bqjobs_deploy_graceful_restart": {"running_s": 3600},
}

for dag_id, behaviour in SCENARIOS.items():
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        tags=["bqjobs", "deployment-test"],
        default_args={"retries": 1, "retry_delay": timedelta(seconds=3)},
    ):
        BigQuerySubmitJobOperator(
            task_id="submit",
            configuration={
                "query": {"query": f"/* fakebq: {json.dumps(behaviour)} */ SELECT 1 AS one", "useLegacySql": False}
            },
            gcp_conn_id="bqjobs_fake",
            deferrable=True,
            poll_interval=2.0,
        )
