"""Every Airflow import of the provider, in one place.

``apache-airflow-providers-common-compat`` maps each name to ``airflow.sdk`` on Airflow 3 and to the
old module paths on Airflow 2, so supporting 2.11 is a matter of this file only.
"""

from __future__ import annotations

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowNotFoundException,
    AirflowSkipException,
    BaseHook,
    BaseOperator,
    BaseSensorOperator,
    Context,
    conf,
)
from airflow.triggers.base import BaseTrigger, TriggerEvent

__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSkipException",
    "BaseHook",
    "BaseOperator",
    "BaseSensorOperator",
    "BaseTrigger",
    "Context",
    "TriggerEvent",
    "aget_connection",
    "default_deferrable",
]


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
