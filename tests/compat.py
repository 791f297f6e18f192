"""What differs between the supported Airflow versions (2.11, 3.0, 3.1, 3.2, 3.3), for tests only.

Tests import Airflow names from ``airflow_bqjobs._compat`` or from here, never from ``airflow.sdk``
(2.11 has none), and use these helpers where the versions differ:

======================================  ===========================================================
``DAG``, ``task``, ``TaskDeferred``     the DAG class, the ``@task`` decorator, the deferral exception
``run_dag(dag, date)``                  ``dag.test()`` for one logical date (also the run's ID date)
``register_dag(dag)``                   write a DAG built in a test to the metadata DB where
                                        ``dag.test`` needs it (3.1+); the ``register_dag`` fixture
``scheduler_dag(dag_id, session)``      that DAG as the scheduler holds it (``create_dagrun``, ``clear``,
                                        ``set_task_instance_state``); ``create_dagrun``, ``clear_run``
``dag_bag(folder)``                     a ``DagBag`` of a folder
``xcoms(run)`` / ``xcom_values(run, task_id)``  the XComs a ``dag.test()`` run left in the DB
``task_log_lines(capsys, caplog)``      what an operator logged, ``[level] message`` per line
``TriggerRunnerHarness``                Airflow's own ``TriggerRunner`` driving triggers, with a user
                                        action and a triggerer shutdown as each version sends them
``import_string``, ``serialize``, ``deserialize``, ``as_task_runner``  what the task runner and
                                        triggerer use to store and rebuild triggers and call execute
``requires_airflow("3.3", why)``        a skip marker for a feature an older Airflow does not have
``dag_test_stops_before_the_next_try``  why ``dag.test()`` runs no try after a killed one (or None)
``in_process_execution_api()``          Airflow's in-process execution API, serving a worker's calls
======================================  ===========================================================

A skip is only for a feature the version lacks, and says which and why, e.g.
``@requires_airflow("3.3", "Airflow < 3.3 has no trigger on_kill")``.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import os
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Callable

import pytest
from airflow import __version__ as _airflow_version
from packaging.version import Version

from airflow_bqjobs._compat import TRIGGER_ON_KILL  # Airflow >= 3.3: the triggerer calls BaseTrigger.on_kill

AIRFLOW_VERSION = Version(Version(_airflow_version).base_version)
AIRFLOW_V3 = AIRFLOW_VERSION >= Version("3.0")


def airflow_at_least(version: str) -> bool:
    return AIRFLOW_VERSION >= Version(version)


# ``clear_task_instances`` adds 1 to ``dag_run.clear_number`` for every clear that resets the run from
# 3.2 on; 2.11 to 3.1 only when the run had finished (``if dr.state in State.finished_dr_states``).
CLEAR_OF_A_RUNNING_RUN_COUNTS = airflow_at_least("3.2")


def requires_airflow(version: str, why: str):
    """Skip marker: the test needs a feature Airflow ``version`` introduced; ``why`` names it."""
    return pytest.mark.skipif(not airflow_at_least(version), reason=f"needs Airflow >= {version}: {why}")


def _build_the_in_process_execution_api_once() -> None:
    """3.0 to 3.2 build a new in-process execution API (a FastAPI app with all its API versions, about
    5 s on 2 cores) for every task ``dag.test()`` runs, and for every trigger runner; 3.3 builds one per
    process (``functools.lru_cache(maxsize=1)`` on ``in_process_api_server``). The tests get 3.3's: a
    ``dag.test()`` of 15 tasks then costs seconds, not minutes, and nothing else changes."""
    if not AIRFLOW_V3 or airflow_at_least("3.3"):
        return
    import functools

    from airflow.sdk.execution_time import supervisor

    build = supervisor.in_process_api_server
    if not hasattr(build, "cache_info"):
        supervisor.in_process_api_server = functools.lru_cache(maxsize=1)(build)


_build_the_in_process_execution_api_once()

def dag_test_stops_before_the_next_try() -> str | None:
    """Why this Airflow's ``dag.test()`` runs no next try after a running try whose task instance moved on
    was killed by SIGTERM and failed (its job cancelled), or ``None`` when it runs it (3.2+).

    A deployment's scheduler runs that try on every version. 2.11: the SIGTERM handler
    (``_execute_task_with_callbacks``) calls ``on_kill`` and raises ``AirflowTaskTerminated``, which
    ``_run_raw_task`` re-raises after recording the failure; a ``BaseException`` there, it goes through
    ``dag.test()``'s ``except Exception`` and ``run_dag`` returns the run as it stands. 3.0 and 3.1: the
    killed try's report of its end is refused (its task instance moved on) and ``dag.test()`` marks the
    task instance failed. 3.2+ log the refused report and go on from the state the try reported."""
    if not AIRFLOW_V3:
        return ("Airflow 2.11's dag.test() stops at the killed try: AirflowTaskTerminated, re-raised by "
                "_run_raw_task after on_kill, is a BaseException its task loop does not catch")
    if not airflow_at_least("3.2"):
        return ("Airflow < 3.2's dag.test() marks the task failed when the killed try's report is refused, "
                "instead of running the next try")
    return None


# The names tests need, wherever this Airflow keeps them (common-compat maps them per version).
from airflow.providers.common.compat.sdk import DAG, TaskDeferred, task  # noqa: E402

if AIRFLOW_VERSION >= Version("3.2"):
    from airflow.sdk.serde import deserialize, serialize
else:
    from airflow.serialization.serde import deserialize, serialize

__all__ = [
    "AIRFLOW_V3", "AIRFLOW_VERSION", "CLEAR_OF_A_RUNNING_RUN_COUNTS", "DAG", "TRIGGER_ON_KILL", "TaskDeferred", "TriggerRunnerHarness", "airflow_at_least",
    "as_task_runner", "dag_bag", "deserialize", "import_string", "register_dag", "requires_airflow",
    "run_dag", "serialize", "task", "task_log_lines", "xcom_values", "xcoms", "scheduler_dag", "create_dagrun",
    "clear_run", "closed_triggerer_channel", "dag_test_stops_before_the_next_try", "in_process_execution_api",
]


def import_string(path: str):
    """``pkg.module.Name`` -> the object, as the triggerer imports a trigger's classpath."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def as_task_runner(operator, func: Callable[[], Any]) -> Any:
    """Call ``func`` (e.g. ``lambda: op.execute(context)``) as Airflow's task runner calls execute,
    so the ExecutorSafeguard ("cannot be called outside TaskInstance") sees its own caller."""
    if AIRFLOW_V3:
        from airflow.sdk.bases.operator import ExecutorSafeguard

        ctx = contextvars.copy_context()
        ctx.run(ExecutorSafeguard.tracker.set, operator)
        return ctx.run(func)
    from airflow.models.base import _sentinel
    from airflow.models.baseoperator import ExecutorSafeguard

    callers = getattr(ExecutorSafeguard._sentinel, "callers", None)
    if callers is None:
        callers = ExecutorSafeguard._sentinel.callers = {}
    callers[f"{type(operator).__name__}__sentinel"] = _sentinel
    return func()


# -- DAG runs --------------------------------------------------------------------------------------

def run_dag(dag, logical_date: datetime, **kwargs):
    """``dag.test()`` for ``logical_date``; the run ID depends only on it, so a second call with the same
    date reruns the same DAG run (Airflow 3 names the run after ``run_after``, 2.11 after the date).

    2.11: a task's ``AirflowTaskTimeout`` (a ``BaseException`` there) escapes ``dag.test()`` after Airflow
    failed the task and called its ``on_kill``, ending the run early; the run is returned as it stands,
    so put a task that times out last; the same for a try killed by SIGTERM (``AirflowTaskTerminated``,
    see ``dag_test_stops_before_the_next_try``). 2.11's rerun deletes the old run, whose ``dag_run_note`` has a
    foreign key to the FAB auth manager's ``ab_user``: its models are imported first, as the webserver
    and ``initdb`` do (a fresh process that never loaded them fails with NoReferencedTableError)."""
    if AIRFLOW_V3:
        return dag.test(logical_date=logical_date, run_after=logical_date, **kwargs)
    import airflow.providers.fab.auth_manager.models  # noqa: F401  (2.11: the ab_user table, see above)
    from airflow.exceptions import AirflowTaskTerminated, AirflowTaskTimeout
    from airflow.models.dagrun import DagRun

    try:
        return dag.test(execution_date=logical_date, **kwargs)
    except (AirflowTaskTimeout, AirflowTaskTerminated):
        (run,) = DagRun.find(dag_id=dag.dag_id, execution_date=logical_date)
        return run


def dag_bag(folder: str | os.PathLike | None = None, **kwargs):
    if AIRFLOW_VERSION >= Version("3.2"):
        from airflow.dag_processing.dagbag import DagBag
    else:
        from airflow.models.dagbag import DagBag
    return DagBag(dag_folder=None if folder is None else str(folder), **kwargs)


_REGISTERED: dict[str, Any] = {}  # dag_id -> the DAG object register_dag was given (for < 3.1)


def register_dag(dag):
    """Write a DAG built inside a test to the metadata DB, where ``dag.test()`` needs it: 3.3's refuses a
    DAG that is not serialised ("the dag is not serialized"); 2.11 and 3.0 serialise it in memory
    themselves. The metadata DB must exist (``airflow_db`` fixture)."""
    _REGISTERED[dag.dag_id] = dag
    if AIRFLOW_VERSION < Version("3.1"):
        return dag
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    if AIRFLOW_VERSION >= Version("3.2"):
        from airflow.dag_processing.dagbag import sync_bag_to_db
    else:
        from airflow.models.dagbag import sync_bag_to_db
    DagBundlesManager().sync_bundles_to_db()
    bag = dag_bag(os.devnull, collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    return dag


def scheduler_dag(dag_id: str, session):
    """The scheduler's object for a DAG ``register_dag`` wrote: 3.1+ reads it back from the DB (DBDagBag);
    3.0 builds the ``SerializedDAG`` its own ``dag.test()`` builds; 2.11's DAG class is the scheduler's.

    Before 3.1 the DAG is written to the DB here too (``DagBag.sync_to_db``, as the DAG processor
    does), since the scheduler's functions read it there: ``clear_task_instances`` raises a cleared
    task instance's ``max_tries`` only when it finds the task in the serialized DAG."""
    if AIRFLOW_VERSION >= Version("3.1"):
        from airflow.models.dagbag import DBDagBag

        return DBDagBag().get_latest_version_of_dag(dag_id, session=session)
    dag = _REGISTERED[dag_id]
    bag = dag_bag(os.devnull, collect_dags=False)
    if AIRFLOW_V3:
        from airflow.dag_processing.bundles.manager import DagBundlesManager

        if dag.relative_fileloc is None:  # as DagBag sets it for a DAG parsed from a file
            dag.relative_fileloc = dag.fileloc
        bag.bag_dag(dag)
        DagBundlesManager().sync_bundles_to_db()  # committed before the DAG rows refer to it
        bag.sync_to_db("dags-folder", None)
    else:
        bag.bag_dag(dag, root_dag=dag)
        bag.sync_to_db()
    if AIRFLOW_V3:
        from airflow.serialization.serialized_objects import SerializedDAG

        return SerializedDAG.deserialize_dag(SerializedDAG.serialize_dag(dag))
    return dag


def create_dagrun(sched_dag, run_id: str, logical_date: datetime, session):
    """A running manual DAG run of ``scheduler_dag(...)`` (2.11: execution_date, no run_after)."""
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType

    interval = (logical_date, logical_date)
    if AIRFLOW_V3:
        from airflow.utils.types import DagRunTriggeredByType

        return sched_dag.create_dagrun(run_id=run_id, logical_date=logical_date, data_interval=interval,
                                       run_after=logical_date, run_type=DagRunType.MANUAL,
                                       triggered_by=DagRunTriggeredByType.TEST, state=DagRunState.RUNNING,
                                       session=session)
    return sched_dag.create_dagrun(run_id=run_id, execution_date=logical_date, data_interval=interval,
                                   run_type=DagRunType.MANUAL, state=DagRunState.RUNNING, session=session)


def clear_run(sched_dag, run_id: str, logical_date: datetime, **kwargs):
    """The DAG's own ``clear`` of one run (2.11's takes the run's date instead of its ID)."""
    if AIRFLOW_V3:
        return sched_dag.clear(run_id=run_id, **kwargs)
    return sched_dag.clear(start_date=logical_date, end_date=logical_date, **kwargs)


def in_process_execution_api():
    """Airflow's in-process execution API (the triggerer's ``in_process_api_server``), set up to serve a
    worker's calls as the api-server does: 3.0's has no DAG bag, which its ``ti_run`` route reads from
    ``app.state.dag_bag`` (the api-server's ``create_app`` gives its execution app one; 3.1+ need none)."""
    from airflow.jobs.triggerer_job_runner import in_process_api_server

    api = in_process_api_server()
    if AIRFLOW_V3 and not airflow_at_least("3.1"):
        from airflow.api_fastapi.common.dagbag import create_dag_bag

        api.app.state.dag_bag = create_dag_bag()  # as 3.0's airflow.api_fastapi.app.create_app does
    return api


def _xcom_model():
    from airflow.models import xcom

    return getattr(xcom, "XComModel", None) or xcom.XCom  # 3.x: XComModel; 2.11: XCom (the table)


def xcoms(run) -> dict[tuple[str, int, str], Any]:
    """Every XCom of a DAG run (``run_dag``'s result): ``{(task_id, map_index, key): value}``."""
    from airflow.utils.session import create_session
    from sqlalchemy import select

    model = _xcom_model()
    with create_session() as session:
        rows = session.scalars(select(model).where(model.dag_id == run.dag_id, model.run_id == run.run_id)).all()
        if AIRFLOW_V3:
            return {(r.task_id, r.map_index, r.key): model.deserialize_value(r) for r in rows}
        return {(r.task_id, r.map_index, r.key): r.value for r in rows}  # 2.11 deserialises on load


def xcom_values(run, task_id: str, key: str = "return_value") -> list[Any]:
    """The ``key`` XComs one task of the run left, by map index (one item for an unmapped task)."""
    found = xcoms(run)
    return [found[k] for k in sorted(k for k in found if k[0] == task_id and k[2] == key)]


# -- logs ------------------------------------------------------------------------------------------

def task_log_lines(capsys, caplog) -> list[str]:
    """What an operator logged in this test, one ``[level] message`` line each (``[warning`` etc.).

    Airflow >= 3.1's task logger (structlog) prints to stdout (``capsys``); 2.11's and 3.0's go
    through the logging module (``caplog``). Request both fixtures and pass them."""
    records = [(r.levelname.lower(), r.getMessage()) for r in caplog.records]
    # 2.11/3.0: the root logger's handler also prints each record to stdout: that line is the record
    out = [line for line in capsys.readouterr().out.splitlines() if not any(line.endswith(m) for _, m in records)]
    return out + [f"[{level}] {message}" for level, message in records]


# -- the triggerer ---------------------------------------------------------------------------------

class TriggerRunnerHarness:
    """Airflow's ``TriggerRunner`` (the triggerer process's runner) driving triggers in this event loop.

    ``user_action`` is what Airflow does when a user marks a deferred task failed/success or clears it:
    3.3 cancels the trigger task with its user-action message, then calls the trigger's ``on_kill``;
    older versions only cancel it, and the task instance's state in the metadata DB is no longer
    ``deferred``. ``shut_down`` is a triggerer stopping: a plain cancel, the task still ``deferred``.

    The trigger's kill rule (``core/kill.py``) reads its task's state through the API server / metadata
    DB, which an in-process test does not have: pass pytest's ``monkeypatch`` and the harness serves
    that read from its own table (``states``), set as Airflow sets the row (``deferred``, then
    ``failed`` on a user action). The real read is exercised by tests/deployment.
    """

    def __init__(self, monkeypatch=None):
        from airflow.jobs.triggerer_job_runner import TriggerRunner

        self.runner = TriggerRunner()
        self.states: dict[int, str | None] = {}
        self._ids: dict[tuple, int] = {}
        if monkeypatch is not None:
            from airflow_bqjobs.triggers import job as trigger_module

            async def task_instance_state(ti):
                return self.states[self._ids[(ti.dag_id, ti.task_id, ti.run_id, ti.map_index)]]

            monkeypatch.setattr(trigger_module, "task_instance_state", task_instance_state)

    def start(self, trigger, trigger_id: int) -> asyncio.Task:
        """Run ``trigger`` as trigger ``trigger_id`` of this triggerer (its task instance: deferred)."""
        if getattr(trigger, "task_instance", None) is None:
            # What the triggerer attaches to a trigger it loads from the DB, as far as runners read it.
            trigger.task_instance = SimpleNamespace(
                id=f"ti-{trigger_id}", dag_id="test_dag", task_id=f"task_{trigger_id}", run_id="test_run",
                map_index=-1, try_number=1, trigger_timeout=None, context_carrier=None)
        ti = trigger.task_instance
        self._ids[(ti.dag_id, ti.task_id, ti.run_id, ti.map_index)] = trigger_id
        self.states[trigger_id] = "deferred"
        if not hasattr(trigger, "timeout_after"):  # 3.0's run_trigger reads it on a cancel
            trigger.timeout_after = None
        self.runner.triggers[trigger_id] = {"name": f"test-trigger-{trigger_id}", "events": 0, "is_watcher": False}
        task = asyncio.create_task(self.runner.run_trigger(trigger_id, trigger))
        self.runner.triggers[trigger_id]["task"] = task
        return task

    async def user_action(self, trigger_id: int, new_state: str | None = "failed") -> None:
        """A user marks the task ``new_state`` (``None``: clears it) while its trigger runs."""
        self.states[trigger_id] = new_state
        self.runner.to_cancel.append(trigger_id)
        await self.runner.cancel_triggers()
        await _cancelled(self.runner.triggers[trigger_id]["task"])

    async def shut_down(self, trigger_id: int) -> None:
        """A triggerer stopping (restart, redeploy): its trigger tasks are cancelled without a message."""
        task = self.runner.triggers[trigger_id]["task"]
        task.cancel()
        await _cancelled(task)

    @property
    def events(self) -> list[tuple[int, Any]]:
        """``[(trigger_id, TriggerEvent)]`` fired so far (3.3 keeps objects, older versions tuples)."""
        return [(e.trigger_id, e.event) if hasattr(e, "trigger_id") else tuple(e) for e in self.runner.events]


async def _cancelled(task: asyncio.Task) -> None:
    try:
        await task
    except asyncio.CancelledError:
        return
    raise AssertionError(f"{task!r} ended without being cancelled")


async def closed_triggerer_channel(monkeypatch):
    """The Task SDK channel of an Airflow 3.0-3.2 triggerer that is stopping: ``TriggerRunner.arun``'s
    ``finally`` has cancelled its reader task, after which ``asyncio.run`` cancels the triggers. The
    real ``TriggerCommsDecoder`` over a socket pair; returns a function that closes the sockets."""
    import socket

    triggerer_job_runner = pytest.importorskip("airflow.jobs.triggerer_job_runner")
    task_runner = pytest.importorskip("airflow.sdk.execution_time.task_runner")
    decoder_class = getattr(triggerer_job_runner, "TriggerCommsDecoder", None)
    if decoder_class is None or not hasattr(decoder_class, "start_reader"):
        pytest.skip("this Airflow's triggerer has no async supervisor channel")
    runner_end, supervisor_end = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=runner_end)
    comms = decoder_class(async_writer=writer, async_reader=reader, socket=runner_end)
    await comms.start_reader()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", comms, raising=False)
    comms._reader_task.cancel()
    await asyncio.gather(comms._reader_task, return_exceptions=True)

    def close() -> None:
        writer.close()
        supervisor_end.close()

    return close
