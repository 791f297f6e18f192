"""Task instances built from the real submit operator, shared by the crash-point and chaos tests."""

from __future__ import annotations

from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator
from tests.reliability.attempt_driver import TaskInstanceSpec
from tests.reliability.environment import CONN_ID, PROJECT
from tests.reliability.task_context import TaskInstanceKey

DAG_ID = "reliability"
RUN_ID = "scheduled__2026-03-01T00:00:00+00:00"


def query_config(sql: str = "SELECT 1") -> dict:
    return {"query": {"query": sql, "useLegacySql": False}}


def submit_task(task_id: str, *, deferrable: bool, dag_id: str = DAG_ID, run_id: str = RUN_ID, map_index: int = -1,
                configuration: dict | None = None, retries: int = 3, poll_interval: float = 0.05,
                request_timeout: float = 5.0, gcp_conn_id: str = CONN_ID, **operator_kwargs) -> TaskInstanceSpec:
    """A task instance of :class:`BigQuerySubmitJobOperator` pointed at the fake."""
    configuration = configuration or query_config()

    def make_operator() -> BigQuerySubmitJobOperator:
        return BigQuerySubmitJobOperator(
            task_id=task_id, configuration=configuration, gcp_conn_id=gcp_conn_id, project_id=PROJECT,
            deferrable=deferrable, poll_interval=poll_interval, request_timeout=request_timeout,
            retries=retries, **operator_kwargs)

    return TaskInstanceSpec(TaskInstanceKey(dag_id, task_id, run_id, map_index), make_operator)
