"""Every Airflow import of the provider, in one place.

``apache-airflow-providers-common-compat`` maps each name to ``airflow.sdk`` on Airflow 3 and to the
old module paths on Airflow 2, so supporting 2.11 is a matter of this file only.
"""

from __future__ import annotations

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowNotFoundException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseHook,
    BaseOperator,
    BaseOperatorLink,
    BaseSensorOperator,
    Context,
    PokeReturnValue,
    conf,
)
from airflow.triggers.base import BaseTrigger, TriggerEvent

__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "BaseHook",
    "BaseOperator",
    "BaseOperatorLink",
    "BaseSensorOperator",
    "BaseTrigger",
    "Context",
    "PokeReturnValue",
    "TRIGGER_ON_KILL",
    "TriggerEvent",
    "aget_connection",
    "default_deferrable",
    "task_instance_state",
    "xcom_value",
]

# Airflow >= 3.3 calls ``BaseTrigger.on_kill`` when a user marks a deferred task failed/success or
# clears it. Older versions only cancel the trigger, exactly as on a triggerer restart.
TRIGGER_ON_KILL = "on_kill" in vars(BaseTrigger)


def default_deferrable() -> bool:
    """``[operators] default_deferrable``, the conventional default of every ``deferrable=`` argument."""
    return conf.getboolean("operators", "default_deferrable", fallback=False)


async def aget_connection(conn_id: str):
    """Fetch a connection from async code (the triggerer); ``None`` when it does not exist."""
    try:
        if hasattr(BaseHook, "aget_connection"):
            return await BaseHook.aget_connection(conn_id)
        from asgiref.sync import sync_to_async

        return await sync_to_async(BaseHook.get_connection)(conn_id)
    except AirflowNotFoundException:
        return None


async def task_instance_state(task_instance) -> str | None:
    """The current state of a trigger's task instance (``trigger.task_instance``), e.g. ``"deferred"``.

    ``None`` when it has no state (cleared) or no longer exists; raises when it cannot be read. Airflow 3
    asks the API server through the triggerer's supervisor; Airflow 2 reads the metadata DB.
    """
    from asgiref.sync import sync_to_async

    ti = task_instance
    try:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
    except ImportError:  # Airflow 2
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session

        def read() -> str | None:
            with create_session() as session:
                found = TaskInstance.get_task_instance(
                    dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=ti.map_index, session=session
                )
                return None if found is None else found.state

        state = await sync_to_async(read)()
    else:
        states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
            dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id], map_index=ti.map_index
        )
        key = ti.task_id if ti.map_index is None or ti.map_index < 0 else f"{ti.task_id}_{ti.map_index}"
        state = (states.get(ti.run_id) or {}).get(key)
    return None if state is None else str(getattr(state, "value", state))


def xcom_value(ti_key, key: str):
    """The XCom value a task instance (``ti_key``: dag_id, task_id, run_id, map_index) stored under ``key``."""
    from airflow.providers.common.compat.sdk import XCom

    return XCom.get_value(ti_key=ti_key, key=key)
