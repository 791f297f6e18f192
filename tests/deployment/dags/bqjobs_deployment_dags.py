"""DAGs for tests/deployment/test_real_deployment.py: one deferrable submit task each, against fakebq.

The connection ``bqjobs_fake`` comes from the environment the test gives every component
(``AIRFLOW_CONN_BQJOBS_FAKE``: the fake's URL as ``emulator_host``, project ``test-project``). The
``/* fakebq: ... */`` directive in each query tells the fake how the job behaves:

* ``bqjobs_deploy_complete``: runs 6 s, then succeeds (never instant: see Airflow #66374, #71580).
* ``bqjobs_deploy_triggerer_restart``: runs "forever"; the test ends it by advancing the fake's clock
  once a new triggerer has taken the trigger over.
* ``bqjobs_deploy_mark_failed``: runs "forever"; a cancel request stops it after 1 s.

``retries=1`` covers the known race where a trigger that fires at once fails its task.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pendulum
from airflow import DAG

from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator

CONN_ID = "bqjobs_fake"
TASK_ID = "submit"
FOREVER_S = 3600

SCENARIOS = {
    "bqjobs_deploy_complete": {"running_s": 6},
    "bqjobs_deploy_triggerer_restart": {"running_s": FOREVER_S},
    "bqjobs_deploy_mark_failed": {"running_s": FOREVER_S, "cancel_s": 1},
    "bqjobs_deploy_takeover": {"running_s": FOREVER_S, "cancel_s": 1},
    # test_console_link_deployment.py: runs "forever" (its link is read while deferred), ended by the clock
    "bqjobs_deploy_console_link": {"running_s": FOREVER_S},
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
            task_id=TASK_ID,
            configuration={
                "query": {
                    "query": f"/* fakebq: {json.dumps(behaviour)} */ SELECT 1 AS one",
                    "useLegacySql": False,
                }
            },
            gcp_conn_id=CONN_ID,
            deferrable=True,
            poll_interval=2.0,
        )
