"""The "BigQuery Console" extra link in a real Airflow 3 deployment, read as the UI reads it: the
api-server's ``GET .../taskInstances/{task}/links``, while the task is deferred and after it succeeded.

The api-server never imports our link class: it serves the URL the operator stored under the link's
``xcom_key`` before deferring. Uses the session's deployment (conftest.py) and the DAG
``bqjobs_deploy_console_link`` (dags/bqjobs_deployment_dags.py: a job that runs until the test
advances the fake's clock).
"""

from __future__ import annotations

import time

import pytest

from tests.deployment.harness import PROJECT, Deployment, record_timing
from tests.deployment.test_real_deployment import (
    FOREVER_S,
    TASK_DEFERRED_TIMEOUT,
    TASK_DONE_TIMEOUT,
    TRIGGER_POLL_TIMEOUT,
    TaskWatch,
)

pytestmark = pytest.mark.deployment

DAG_ID = "bqjobs_deploy_console_link"
DAG_UNDER_TEST = {"test_console_link_is_served_while_deferred_and_after_success": DAG_ID}


def console_url(job: dict) -> str:
    return (f"https://console.cloud.google.com/bigquery?project={PROJECT}"
            f"&ws=!1m5!1m4!1m3!1s{PROJECT}!2s{job['job_id']}!3s{job['location']}")


def test_console_link_is_served_while_deferred_and_after_success(deployment: Deployment):
    airflow, fake = deployment.airflow, deployment.fake
    watch = TaskWatch(deployment, DAG_ID)
    watch.wait_state("deferred", TASK_DEFERRED_TIMEOUT)
    job = watch.the_job()
    watch.wait_polled(job["job_id"], time.time(), TRIGGER_POLL_TIMEOUT, "the triggerer to poll the job")

    t_read = time.monotonic()
    links = airflow.api("GET", f"{watch.path}/links")
    record_timing("console link: GET links while deferred", time.monotonic() - t_read)
    assert watch.ti()["state"] == "deferred", f"states {watch.states}"
    assert links["extra_links"] == {"BigQuery Console": console_url(job)}, links

    fake.clock.advance(FOREVER_S)
    ti = watch.wait_finished(TASK_DONE_TIMEOUT)
    assert ti["state"] == "success", f"states {watch.states}"
    # The task runner re-stored the link when the try ended (from our get_link): still the job's page.
    assert airflow.api("GET", f"{watch.path}/links")["extra_links"] == {"BigQuery Console": console_url(job)}
    assert len(watch.jobs()) == 1
