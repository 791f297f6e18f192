"""A DAG file's pace, set for the fake BigQuery server: for tests that run a DAG file as it is written.

A DAG file paces its waits for BigQuery: checks from 1 s on, then every ``poll_interval`` (10 s by
default, 2 s in the examples). The fake's jobs last a fraction of a second, so each wait would cost a
second or more of doing nothing; ``check_often(dag)`` sets the interval of every task of ours that
waits on a job, as a test sets ``retry_delay`` to 0 so that ``dag.test()`` does not wait out retry
delays. The tasks, their arguments otherwise, their jobs and their order stay as the file wrote them.
"""

from __future__ import annotations

FAST = 0.05  # seconds, as the operators built in tests use


def check_often(dag, interval: float = FAST):
    """Every task of ours in ``dag`` that waits on a job checks it every ``interval`` seconds: its
    ``poll_interval``, or the sensor's ``poke_interval`` (also its trigger's interval). Mapped tasks
    too (their operator is built per map index from ``partial_kwargs``). Returns ``dag``."""
    from airflow_bqjobs.operators._waiting import JobWaitingOperator
    from airflow_bqjobs.sensors.job import BigQueryJobSensor

    for task in dag.tasks:
        kind = getattr(task, "operator_class", type(task))
        if not isinstance(kind, type):
            continue
        name = "poll_interval" if issubclass(kind, JobWaitingOperator) else (
            "poke_interval" if issubclass(kind, BigQueryJobSensor) else None)
        if name is None:
            continue
        if hasattr(task, "partial_kwargs"):
            task.partial_kwargs[name] = interval
        else:
            setattr(task, name, interval)
    return dag
