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
    "SupervisorChannelClosed",
    "TRIGGER_ON_KILL",
    "TriggerEvent",
    "aget_connection",
    "default_deferrable",
    "current_task_state",
    "current_task_state_within",
    "task_instance_state",
    "xcom_value",
]

# Airflow >= 3.3 calls ``BaseTrigger.on_kill`` when a user marks a deferred task failed/success or
# clears it. Older versions only cancel the trigger, exactly as on a triggerer restart.
TRIGGER_ON_KILL = "on_kill" in vars(BaseTrigger)


class SupervisorChannelClosed(RuntimeError):
    """The Task SDK channel to this process's supervisor is closed for good: a read through it cannot succeed."""


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

    The read runs in a pool of its own (:func:`_state_reader`): not on one thread (reads of several
    triggers killed at once must not queue on each other), and not in asyncio's default pool, which
    every trigger of the triggerer and Airflow's own async logging share: a kill's read is bounded,
    and must not time out behind their work.
    """
    import asyncio

    return await asyncio.get_running_loop().run_in_executor(_state_reader(), current_task_state, task_instance)


_STATE_READERS: dict = {}  # pid -> ThreadPoolExecutor (a forked child builds its own)


def _state_reader():
    import os
    from concurrent.futures import ThreadPoolExecutor

    pid = os.getpid()
    pool = _STATE_READERS.get(pid)
    if pool is None:
        pool = _STATE_READERS.setdefault(pid, ThreadPoolExecutor(4, thread_name_prefix="bqjobs-task-state"))
    return pool


def current_task_state(ti) -> str | None:
    """The current state of the task instance ``ti`` names (dag_id, task_id, run_id, map_index).

    Where the Task SDK's supervisor channel exists (an Airflow 3 task runner or triggerer) it asks the
    API server through it; otherwise (Airflow 2, or a process with metadata-DB access such as
    ``dag.test()``) it reads the metadata DB. ``None`` when it has no state or no longer exists;
    raises when it cannot be read.
    """
    map_index = -1 if ti.map_index is None else ti.map_index
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:  # Airflow 2
        task_runner = None
    if task_runner is not None and getattr(task_runner, "SUPERVISOR_COMMS", None) is not None:
        # A triggerer's channel whose reader has ended (3.0-3.2 shutdown: arun's finally cancels it,
        # then the triggers are cancelled) would never deliver the answer: fail now, not hang.
        reader = getattr(task_runner.SUPERVISOR_COMMS, "_reader_task", None)
        if reader is not None and reader.done():
            raise SupervisorChannelClosed("the triggerer's supervisor channel is closed (the triggerer is stopping)")
        states = task_runner.RuntimeTaskInstance.get_task_states(
            dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id], map_index=ti.map_index
        )
        key = ti.task_id if map_index < 0 else f"{ti.task_id}_{map_index}"
        state = (states.get(ti.run_id) or {}).get(key)
    else:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            state = session.scalar(
                select(TaskInstance.state).where(
                    TaskInstance.dag_id == ti.dag_id,
                    TaskInstance.task_id == ti.task_id,
                    TaskInstance.run_id == ti.run_id,
                    TaskInstance.map_index == map_index,
                )
            )
    return None if state is None else str(getattr(state, "value", state))


def current_task_state_within(ti, timeout: float) -> str | None:
    """:func:`current_task_state` from a signal handler: in a thread, bounded by ``timeout``.

    The task runner calls ``on_kill`` from its SIGTERM handler, possibly while the interrupted code
    holds the supervisor channel's lock; a thread cannot deadlock the handler. Raises ``TimeoutError``.
    """
    import threading

    result: dict = {}

    def read() -> None:
        try:
            result["state"] = current_task_state(ti)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            result["error"] = exc

    reader = threading.Thread(target=read, name="bqjobs-task-state", daemon=True)
    reader.start()
    reader.join(timeout)
    if "error" in result:
        raise result["error"]
    if "state" not in result:
        raise TimeoutError(f"reading the task instance's state took more than {timeout} s")
    return result["state"]
def xcom_value(ti_key, key: str):
    """The XCom value a task instance (``ti_key``: dag_id, task_id, run_id, map_index) stored under ``key``."""
    from airflow.providers.common.compat.sdk import XCom

    return XCom.get_value(ti_key=ti_key, key=key)
