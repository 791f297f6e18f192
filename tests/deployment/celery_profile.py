"""The CeleryExecutor deployment profile: PostgreSQL + Redis + fakebq + a real distributed Airflow.

Processes, all separate and on 127.0.0.1: the fake BigQuery server, PostgreSQL (metadata DB and Celery
result backend), Redis (Celery broker), api-server, scheduler (CeleryExecutor), dag-processor, **two**
Celery workers (``celery-worker-1``, ``celery-worker-2``, concurrency ``WORKER_CONCURRENCY``) and **two**
triggerers (``triggerer``, ``triggerer-2``). PostgreSQL and Redis come from Debian packages, installed
with apt-get when missing (root). The same harness as the LocalExecutor profile
(:class:`tests.deployment.airflow_deployment.AirflowDeployment`) starts, health-checks and stops every
component by PID; only the environment differs (``extra_env``).

Zombie and takeover bounds are short, so that a soak sees them within minutes: a task instance whose
heartbeat is 20 s old is failed (then retried) by the scheduler, a triggerer whose heartbeat is 10 s
old loses its triggers to the other one (``[triggerer] job_heartbeat_sec`` 2 s), a task queued for
90 s is re-queued, and a Celery message a killed worker had taken comes back after 120 s.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from tests.deployment.airflow_deployment import AirflowDeployment, DeploymentError, _log
from tests.deployment.harness import CONN_ID, PROJECT, record_timing
from tests.deployment.postgres import PostgresServer
from tests.deployment.postgres import ensure_installed as ensure_postgres
from tests.deployment.redis import RedisServer
from tests.deployment.redis import ensure_installed as ensure_redis

WORKER_CONCURRENCY = int(os.environ.get("BQJOBS_SOAK_WORKER_CONCURRENCY", "3"))
TRIGGERER_HEALTH_CHECK_THRESHOLD_S = 10
TASK_HEARTBEAT_TIMEOUT_S = 20
MIGRATE_TIMEOUT = 240
HEALTHY_TIMEOUT = 180
CORE = ("api-server", "scheduler", "dag-processor")


def celery_env(postgres: PostgresServer, redis: RedisServer, fake_url: str) -> dict[str, str]:
    connection = {"conn_type": "bigquery_jobs", "extra": {"project": PROJECT, "emulator_host": fake_url}}
    return {
        f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(connection),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(4 * WORKER_CONCURRENCY),
        "AIRFLOW__CELERY__BROKER_URL": redis.url(),
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + postgres.url(),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "120",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(TASK_HEARTBEAT_TIMEOUT_S),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "90",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "15",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(TRIGGERER_HEALTH_CHECK_THRESHOLD_S),
    }


@dataclass
class CeleryDeployment:
    fake: object  # tests.fakebq.remote.FakeBigQueryProcess
    postgres: PostgresServer
    redis: RedisServer
    airflow: AirflowDeployment
    workers: list[str] = field(default_factory=list)  # names of the running Celery workers
    triggerers: list[str] = field(default_factory=list)
    triggerer_job_ids: dict[str, int] = field(default_factory=dict)  # name -> its current TriggererJob id
    seen_triggerer_jobs: set[int] = field(default_factory=set)
    _next_worker: int = 1

    # -- Celery workers -------------------------------------------------------------------------

    def start_worker(self, timeout: float = 90, *, wait: bool = True) -> str:
        """Start ``celery-worker-<n>`` (a new n each time) and (``wait``) wait until Celery says it is ready."""
        name = f"celery-worker-{self._next_worker}"
        self._next_worker += 1
        component = self.airflow.start(name)
        self.workers.append(name)

        def ready():
            if not component.alive():
                raise DeploymentError(f"{name} exited with {component.proc.returncode}\n{self.airflow.diagnostics()}")
            try:
                return " ready." in component.log_path.read_text(errors="replace")
            except OSError:
                return False

        if wait:
            self.airflow.wait_for(ready, timeout, f"{name} to report ready", interval=1.0)
        return name

    def worker_ready(self, name: str) -> bool:
        """Celery logged ``ready.`` for this worker."""
        try:
            return " ready." in self.airflow.components[name].log_path.read_text(errors="replace")
        except (KeyError, OSError):
            return False

    def kill_worker(self, name: str) -> list[int]:
        """SIGKILL the worker's whole process tree at once (a lost machine: main, pool, task processes)."""
        self.workers.remove(name)
        return self.airflow.kill(name)

    # -- triggerers -----------------------------------------------------------------------------

    def _wait_new_triggerer_job(self, name: str, timeout: float = 60) -> int:
        """The TriggererJob id of triggerer ``name``, just started: the one running row not seen before
        (triggerers are started one at a time, so there is exactly one)."""
        known = set(self.seen_triggerer_jobs)

        def new_job():
            self.airflow.assert_running(name)
            rows = self.postgres.query("SELECT id FROM job WHERE job_type = 'TriggererJob' AND state = 'running'")
            fresh = [r[0] for r in rows if r[0] not in known]
            return fresh[0] if len(fresh) == 1 else None

        job_id = self.airflow.wait_for(new_job, timeout, f"a new TriggererJob row for {name}")
        self.triggerer_job_ids[name] = job_id
        self.seen_triggerer_jobs.add(job_id)
        return job_id

    def start_triggerer(self, name: str) -> int:
        """Start triggerer ``name`` (``triggerer`` or ``triggerer-<n>``); returns its TriggererJob id."""
        self.airflow.start(name)
        if name not in self.triggerers:
            self.triggerers.append(name)
        return self._wait_new_triggerer_job(name)

    def assert_running(self) -> None:
        self.airflow.assert_running(*CORE, *self.workers, *self.triggerers)


@contextlib.contextmanager
def celery_deployment(workers: int = 2, triggerers: int = 2) -> Iterator[CeleryDeployment]:
    """Start everything, health-check it, yield; stop everything by PID on every exit path."""
    from tests.fakebq.remote import FakeBigQueryProcess

    previous_sigterm = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):  # CI cancelled us: unwind so that the finally below runs
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, on_sigterm)
    home = Path(tempfile.mkdtemp(prefix="bqjobs-celery-home-"))
    fake = postgres = redis = airflow = None
    session_start = time.monotonic()
    try:
        t = time.monotonic()
        ensure_postgres()
        ensure_redis()
        record_timing("celery: PostgreSQL + Redis present (apt-get install when missing)", time.monotonic() - t)
        t = time.monotonic()
        fake = FakeBigQueryProcess.start(host="127.0.0.1")
        postgres = PostgresServer.start()
        redis = RedisServer.start()
        record_timing("celery: fakebq + PostgreSQL + Redis started", time.monotonic() - t)

        airflow = AirflowDeployment(home, postgres.url(), extra_env=celery_env(postgres, redis, fake.url))
        t = time.monotonic()
        airflow.run_cli("db", "migrate", timeout=MIGRATE_TIMEOUT)
        record_timing("celery: airflow db migrate", time.monotonic() - t)

        dep = CeleryDeployment(fake, postgres, redis, airflow)
        t = time.monotonic()
        for name in CORE:
            airflow.start(name)
        for n in range(triggerers):  # one at a time: each one's TriggererJob row is the new one
            dep.start_triggerer("triggerer" if n == 0 else f"triggerer-{n + 1}")
        airflow.wait_healthy(HEALTHY_TIMEOUT)
        for _ in range(workers):
            dep.start_worker()
        dep.assert_running()
        record_timing("celery: components started -> all healthy, workers ready", time.monotonic() - t)
        record_timing("celery: deployment ready (total start-up)", time.monotonic() - session_start)
        yield dep
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the teardown short
        t = time.monotonic()
        try:
            if airflow is not None:
                for component in airflow.components.values():  # a paused process ignores SIGTERM
                    if component.paused:
                        component.resume()
                airflow.stop_all()
        finally:
            for server in (redis, postgres, fake):
                if server is not None:
                    try:
                        server.stop()
                    except Exception as exc:  # keep stopping the others
                        _log(f"stopping {type(server).__name__} failed: {exc!r}")
            if os.environ.get("BQJOBS_KEEP_DEPLOYMENT"):
                print(f"[deployment] kept AIRFLOW_HOME {home}", flush=True)
            else:
                shutil.rmtree(home, ignore_errors=True)
            signal.signal(signal.SIGTERM, previous_sigterm)
            if airflow is not None:
                record_timing("celery: teardown (stop components, Redis, PostgreSQL, fakebq)", time.monotonic() - t)
