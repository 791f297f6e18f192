"""Session fixture ``deployment``: fakebq + PostgreSQL + a real Airflow deployment, for tests marked
``deployment`` (run them with ``bash scripts/deployment_test.sh``; nothing here starts unless such a
test runs).

Start order: the fake BigQuery server (its own process), PostgreSQL (installed with apt-get when missing
and root), ``airflow db migrate``, then api-server, scheduler, dag-processor and triggerer as separate
processes, until ``/api/v2/monitor/health`` says all are healthy and the test DAGs are parsed without
import errors; the DAGs are then unpaused through the REST API. Teardown stops every process (SIGTERM,
then SIGKILL, by PID) and PostgreSQL, on every exit path: fixture finalisers, SIGTERM to pytest (turned
into KeyboardInterrupt, so finalisers run), atexit, and PR_SET_PDEATHSIG on the components.

Timings are recorded in ``TIMINGS`` and printed in pytest's terminal summary; when a deployment test
fails, the tails of all component logs and of the test DAG's task/trigger logs are attached to its report.
Set BQJOBS_KEEP_DEPLOYMENT=1 to keep the AIRFLOW_HOME (logs) after the session.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

from tests.deployment.airflow_deployment import COMPONENT_ORDER, AirflowDeployment, DeploymentError
from tests.deployment.harness import CONN_ID, DAG_IDS, NOTES, PROJECT, TIMINGS, Deployment, note, record_timing
from tests.deployment.postgres import PostgresServer, ensure_installed, find_bindir

# Bounds (seconds) for the start-up waits; generous for a loaded 2-core CI machine.
MIGRATE_TIMEOUT = 240
HEALTHY_TIMEOUT = 180
DAGS_PARSED_TIMEOUT = 120


@pytest.fixture(scope="session")
def deployment():
    from tests.fakebq.remote import FakeBigQueryProcess

    previous_sigterm = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):  # CI cancelled us: unwind so that the finalisers below run
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, on_sigterm)
    home = Path(tempfile.mkdtemp(prefix="bqjobs-deployment-home-"))
    fake = postgres = airflow = None
    session_start = time.monotonic()
    try:
        if find_bindir() is None:  # a fresh machine: apt-get install postgresql (root only)
            t = time.monotonic()
            ensure_installed()
            record_timing("PostgreSQL install (apt-get update + install)", time.monotonic() - t)
        t = time.monotonic()
        fake = FakeBigQueryProcess.start(host="127.0.0.1")
        postgres = PostgresServer.start()
        record_timing("fakebq + PostgreSQL (initdb, start, create DB)", time.monotonic() - t)

        connection = {"conn_type": "bigquery_jobs", "extra": {"project": PROJECT, "emulator_host": fake.url}}
        airflow = AirflowDeployment(home, postgres.url(),
                                    extra_env={f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(connection)})
        t = time.monotonic()
        airflow.run_cli("db", "migrate", timeout=MIGRATE_TIMEOUT)
        record_timing("airflow db migrate", time.monotonic() - t)

        t = time.monotonic()
        for name in COMPONENT_ORDER:
            airflow.start(name)
        airflow.wait_healthy(HEALTHY_TIMEOUT)
        record_timing("components started -> all healthy", time.monotonic() - t)

        # No token anywhere: an endpoint that needs authorisation answers an anonymous caller.
        airflow.api("GET", "/dags?limit=1")

        def dags_parsed():
            errors = airflow.api("GET", "/importErrors")
            if errors["total_entries"]:
                raise DeploymentError(f"the test DAGs do not import: {json.dumps(errors, indent=1)}")
            found = {d["dag_id"] for d in airflow.api("GET", "/dags?dag_id_pattern=bqjobs_deploy&limit=100")["dags"]}
            return set(DAG_IDS) <= found

        airflow.wait_for(dags_parsed, DAGS_PARSED_TIMEOUT, f"DAGs {DAG_IDS} to be parsed")
        for dag_id in DAG_IDS:
            airflow.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})
        record_timing("deployment ready (start of session -> DAGs parsed and unpaused)", time.monotonic() - session_start)

        dep = Deployment(fake, postgres, airflow)
        dep.wait_new_triggerer_job(airflow.components["triggerer"].pid)
        yield dep
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the teardown short
        t = time.monotonic()
        try:
            if airflow is not None:
                airflow.stop_all()
        finally:
            try:
                if postgres is not None:
                    postgres.stop()
            finally:
                if fake is not None:
                    fake.stop()
                if os.environ.get("BQJOBS_KEEP_DEPLOYMENT"):
                    print(f"[deployment] kept AIRFLOW_HOME {home}", flush=True)
                else:
                    shutil.rmtree(home, ignore_errors=True)
                signal.signal(signal.SIGTERM, previous_sigterm)
                if airflow is not None:
                    record_timing("teardown (stop components, PostgreSQL, fakebq)", time.monotonic() - t)
                    for name, seconds, code, killed in airflow.stop_report:
                        record_timing(f"  stop {name} (exit code {code})", seconds)
                        if killed:
                            note(f"{name} did not stop on SIGTERM: SIGKILLed pids {killed}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed or "deployment" not in getattr(item, "fixturenames", ()):
        return
    dep = item.funcargs.get("deployment") if hasattr(item, "funcargs") else None
    if dep is None:
        return
    try:
        if not (call.excinfo and isinstance(call.excinfo.value, DeploymentError)):  # its message has them
            report.sections.append(("airflow component logs (tails)", dep.airflow.diagnostics(80)))
        dag_id = getattr(item.module, "DAG_UNDER_TEST", {}).get(item.originalname)
        if dag_id:
            files = dep.airflow.task_log_files(dag_id)
            text = "\n".join(f"----- {name} -----\n" + "\n".join(body.splitlines()[-40:]) for name, body in files.items())
            report.sections.append((f"task and trigger logs of {dag_id}", text or "<none>"))
            jobs = [j for j in dep.fake.jobs if j["labels"].get("airflow-dag") == dag_id]
            slim = [{k: j[k] for k in ("job_id", "state", "error_result", "cancel_requested")} for j in jobs]
            report.sections.append((f"fakebq jobs of {dag_id}", json.dumps(slim, indent=1)))
    except Exception as exc:  # never hide the failure itself
        report.sections.append(("diagnostics", f"could not collect diagnostics: {exc!r}"))


def pytest_terminal_summary(terminalreporter):
    if not TIMINGS:
        return
    terminalreporter.section("real Airflow deployment: timings")
    width = max(map(len, TIMINGS))
    for label, seconds in TIMINGS.items():
        terminalreporter.write_line(f"{label:<{width}}  {seconds:7.1f} s")
    for text in NOTES:
        terminalreporter.write_line(f"note: {text}")
