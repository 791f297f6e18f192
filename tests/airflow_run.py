"""A real DAG run in the test session's metadata DB, moved through Airflow's own functions.

``create_dagrun``, ``DagRun.schedule_tis`` (which numbers the tries), ``TaskInstance.handle_failure``,
``clear_task_instances``, the DAG's ``clear`` and ``set_task_instance_state`` (what the REST API's
"mark failed/success" calls). Each try's context carries what Airflow's ``ti_run`` hands the worker
(try_number, max_tries, the run's clear_number), read back from the DB. What differs per Airflow
version (the scheduler's DAG object, create_dagrun, clear) is in tests/compat.py.
"""

from __future__ import annotations

from datetime import datetime, timezone

from tests.airflow_context import make_context

D = datetime(2026, 3, 1, tzinfo=timezone.utc)


class Run:
    """One real DAG run, driven through Airflow's own scheduling, failure and clear functions."""

    def __init__(self, dag, ops, run_id="manual__1"):
        from airflow.utils.session import create_session

        from tests.compat import create_dagrun, scheduler_dag

        self.ops = ops
        self.dag_id = dag.dag_id
        with create_session() as session:
            self.serialized = scheduler_dag(dag.dag_id, session)
            self.run_id = create_dagrun(self.serialized, run_id, D, session).run_id

    @classmethod
    def existing(cls, dag_id, run_id, ops):
        """The run ``dag.test()`` (or anything else) created."""
        from airflow.utils.session import create_session

        from tests.compat import scheduler_dag

        run = cls.__new__(cls)
        run.ops, run.dag_id, run.run_id = ops, dag_id, run_id
        with create_session() as session:
            run.serialized = scheduler_dag(dag_id, session)
        return run

    def _ti(self, session, task_id, map_index=-1):
        from airflow.models.taskinstance import TaskInstance as TI
        from sqlalchemy import select

        ti = session.scalars(select(TI).where(TI.dag_id == self.dag_id, TI.run_id == self.run_id,
                                              TI.task_id == task_id, TI.map_index == map_index)).one()
        ti.task = self.serialized.get_task(task_id)  # as the scheduler's DAG bag attaches it
        return ti

    def _dag_run(self, session):
        from airflow.models.dagrun import DagRun
        from sqlalchemy import select

        return session.scalars(select(DagRun).where(DagRun.dag_id == self.dag_id, DagRun.run_id == self.run_id)).one()

    def start_try(self, task_id, map_index=-1) -> dict:
        """The scheduler queues the next try; the worker gets its context (as ``ti_run`` builds it)."""
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState

        with create_session() as session:
            ti = self._ti(session, task_id, map_index)
            self._dag_run(session).schedule_tis([ti], session=session)
            session.flush()
            session.expire_all()
            ti = self._ti(session, task_id, map_index)
            assert ti.state == "scheduled", ti.state
            ti.state = TaskInstanceState.RUNNING
            context = make_context(self.ops[task_id], run_id=self.run_id, try_number=ti.try_number,
                                   max_tries=ti.max_tries, clear_number=self._dag_run(session).clear_number,
                                   map_index=map_index)
        context["ti"].dag_id = self.dag_id
        return context

    def fail_try(self, task_id, map_index=-1):
        """What Airflow does when a try dies: up_for_retry while tries are left, else failed."""
        from airflow.utils.session import create_session

        with create_session() as session:
            ti = self._ti(session, task_id, map_index)
            ti.handle_failure("worker died", session=session)

    def state(self, task_id, map_index=-1):
        from airflow.utils.session import create_session

        with create_session() as session:
            return self._ti(session, task_id, map_index).state

    def clear_task_instances(self, *keys):
        """Airflow's ``clear_task_instances`` with its default (reset the run), as the REST API's clear."""
        from airflow.models.taskinstance import clear_task_instances
        from airflow.utils.session import create_session

        with create_session() as session:
            clear_task_instances([self._ti(session, *key) for key in keys], session)

    def clear_failed_only(self):
        """The run's "Clear failed tasks": the DAG's own ``clear(only_failed=True)``."""
        from tests.compat import clear_run

        clear_run(self.serialized, self.run_id, D, only_failed=True)

    def clear_task(self, task_id, map_index=-1):
        """Clear one task instance from the UI/REST API: the DAG's own ``clear`` (run reset)."""
        from tests.compat import clear_run

        task = task_id if map_index < 0 else (task_id, map_index)
        clear_run(self.serialized, self.run_id, D, task_ids=[task])

    def mark(self, task_id, state, map_index=-1):
        """A user marks the task instance failed/success (the REST API calls this)."""
        self.serialized.set_task_instance_state(task_id=task_id, run_id=self.run_id, state=state,
                                                map_indexes=None if map_index < 0 else [map_index])

    def set_state(self, task_id, state, map_index=-1):
        """Where the task's own try (worker or trigger) moved it, e.g. deferred."""
        from airflow.utils.session import create_session

        with create_session() as session:
            self._ti(session, task_id, map_index).state = state

    def task_instance(self, task_id, map_index=-1):
        """The task instance as the triggerer hands it to a trigger (``trigger.task_instance``)."""
        from airflow.utils.session import create_session

        with create_session() as session:
            ti = self._ti(session, task_id, map_index)
            session.expunge(ti)
            return ti

    def clear_number(self):
        from airflow.utils.session import create_session

        with create_session() as session:
            return self._dag_run(session).clear_number
