"""Run every example DAG in example_dags/ end to end against a BigQuery endpoint (the emulator).

Started by scripts/run_examples.sh, which provides the environment: BIGQUERY_EMULATOR_HOST, an
AIRFLOW_HOME with a migrated metadata DB, AIRFLOW__CORE__DAGS_FOLDER=example_dags.

1. Parses example_dags/ with Airflow's DagBag and collects its DAGs and import errors.
2. First pass: ``dag.test()`` of LOGICAL_DATE for each DAG (``run_after`` too on 3.x; run ID
   ``manual__2025-01-01T00:00:00+00:00``). After each DAG run it prints one row per task: the job
   the task created or acted on, what it did (``inserted`` a new job, ``reattached`` to a running
   one, ``reused`` a finished one; or the sensor's, cancel's, delete's, list's outcome), the job's
   state, bytes and labels. "inserted / reattached / reused" is read from BigQuery, not from our
   logs: a job absent before the DAG run was inserted by it; one present and unfinished was
   reattached to; one present and DONE was reused.
3. Second pass: the same DAG runs again (``dag.test()`` deletes the run and creates it afresh under
   the same run ID, try numbers starting at 1 again). Job IDs are deterministic, so the tasks reuse
   the first pass's jobs; only a job whose metadata the first pass deleted (and with it its
   exactly-once record) is legitimately created again. Any other new job is unexpected.

With ``--log-file``, everything Airflow prints (the full task logs, progress lines included) goes
to that file and only the report to the terminal.

Exit status: 1 when any DAG fails to import or any DAG run of either pass does not succeed;
with --expect-no-new-jobs also when the second pass created unexpected jobs. Otherwise 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LOGICAL_DATE = datetime(2025, 1, 1, tzinfo=timezone.utc)
AIRFLOW_KEYS = ("airflow-dag", "airflow-task", "airflow-run", "airflow-map-index")
REPORT = sys.stdout  # replaced by the terminal's stdout when Airflow's output goes to --log-file


def say(text: str = "") -> None:
    print(text, file=REPORT, flush=True)


@dataclass
class RunResult:
    dag_id: str
    state: str
    seconds: float
    tasks: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None
    rows: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.state == "success"


def load_dags(folder: Path, only: set[str] | None):
    """Parse the folder as Airflow does (DagBag); returns (dags sorted by id, {file: import error})."""
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow >= 3.1
    except ImportError:  # pragma: no cover
        from airflow.models.dagbag import DagBag

    bag = DagBag(dag_folder=str(folder))
    dags = [dag for dag_id, dag in sorted(bag.dags.items()) if only is None or dag_id in only]
    return dags, dict(bag.import_errors)


def bigquery_client():
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    project = os.environ.get("GOOGLE_CLOUD_PROJECT", "local")
    return bigquery.Client(project=project, credentials=AnonymousCredentials())


def list_jobs(client) -> dict[str, dict]:
    """{job ID: compact job} of every job the endpoint holds, from BigQuery's own resources."""
    from airflow_bqjobs.core.progress import format_bytes

    jobs = {}
    for job in client.list_jobs(all_users=True, max_results=10_000):
        resource = job._properties
        stats = resource.get("statistics") or {}
        error = (resource.get("status") or {}).get("errorResult") or {}
        size = (stats.get("query") or {}).get("totalBytesProcessed") or (stats.get("load") or {}).get("inputFileBytes")
        jobs[job.job_id] = {
            "id": job.job_id,
            "type": job.job_type,
            "state": job.state + (f" ({error.get('reason')})" if error else ""),
            "done": job.state == "DONE",
            "bytes": format_bytes(int(size)) if size not in (None, "") else "",
            "labels": dict(((resource.get("configuration") or {}).get("labels")) or {}),
            "error": f"{error.get('reason', '')}: {error.get('message', '')}" if error else "",
        }
    return jobs


def print_table(rows: list[dict], columns: list[str], truncate: dict[str, int] | None = None) -> None:
    if not rows:
        say("  (none)")
        return
    truncate = truncate or {}

    def cell(row, column) -> str:
        text = " ".join(str(row.get(column) if row.get(column) is not None else "").split())
        limit = truncate.get(column)
        return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."

    widths = {c: max(len(c), *(len(cell(r, c)) for r in rows)) for c in columns}
    say("  " + "  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    say("  " + "  ".join("-" * widths[c] for c in columns))
    for row in rows:
        say("  " + "  ".join(cell(row, c).ljust(widths[c]) for c in columns).rstrip())


# -- what each task did -------------------------------------------------------------------------


def return_values(dag_id: str, run_id: str) -> dict[tuple[str, int], object]:
    """{(task_id, map_index): return value} the DAG run's tasks left in Airflow's metadata DB."""
    from airflow.models import xcom
    from airflow.utils.session import create_session
    from sqlalchemy import select

    model = getattr(xcom, "XComModel", None)  # 3.x; 2.11: XCom is the table and deserialises on load
    values = {}
    with create_session() as session:
        rows = session.scalars(select(model or xcom.XCom).where(
            (model or xcom.XCom).dag_id == dag_id, (model or xcom.XCom).run_id == run_id,
            (model or xcom.XCom).key == "return_value"))
        for row in rows:
            values[(row.task_id, row.map_index)] = model.deserialize_value(row) if model else row.value
    return values


def creation_action(job_id: str, before: dict[str, dict]) -> str:
    """What the DAG run did to get this job, as BigQuery shows it (see the module docstring)."""
    if job_id not in before:
        return "inserted"
    return "reused" if before[job_id]["done"] else "reattached"


def task_rows(dag, run_id: str, before: dict[str, dict], after: dict[str, dict]) -> list[dict]:
    """One row per (task, job): which job, what the task did with it, its state, bytes and labels."""
    from airflow_bqjobs.operators import (
        BigQueryCancelJobOperator,
        BigQueryDeleteJobMetadataOperator,
        BigQueryGetJobOperator,
        BigQueryListJobsOperator,
    )
    from airflow_bqjobs.sensors.job import BigQueryJobSensor

    rows = []
    for (task_id, map_index), value in sorted(return_values(dag.dag_id, run_id).items()):
        task = dag.get_task(task_id)
        name = task_id + (f"[{map_index}]" if map_index >= 0 else "")

        def row(job_id, action):
            job = after.get(job_id, {})
            labels = ", ".join(f"{k}={v}" for k, v in job.get("labels", {}).items() if k not in AIRFLOW_KEYS)
            return {"task": name, "action": action, "state": job.get("state", "(metadata deleted)"),
                    "bytes": job.get("bytes", ""), "labels": labels, "job id": job_id}

        if isinstance(task, BigQueryListJobsOperator):
            rows.append({"task": name, "action": f"listed {len(value)} job(s)"})
        elif isinstance(task, (BigQueryCancelJobOperator, BigQueryDeleteJobMetadataOperator)):
            verb = "cancel" if isinstance(task, BigQueryCancelJobOperator) else "delete metadata"
            rows += [row(entry["job"]["jobId"], f"{verb}: {entry['outcome']}") for entry in value]
        elif isinstance(task, BigQueryJobSensor):
            rows.append(row(value["jobId"], "waited for it"))
        elif isinstance(task, BigQueryGetJobOperator):
            rows.append(row(value["job_id"], "read it"))
        elif isinstance(value, dict) and "jobId" in value:  # submit, rerun
            rows.append(row(value["jobId"], creation_action(value["jobId"], before)))
        elif isinstance(value, dict) and all(isinstance(v, dict) and "jobId" in v for v in value.values()):
            rows += [row(v["jobId"], creation_action(v["jobId"], before)) for v in value.values()]
    return rows


def test_dag(dag):
    """``dag.test()`` of the DAG run manual__<LOGICAL_DATE>, on every supported Airflow."""
    from airflow import __version__

    if int(__version__.split(".")[0]) >= 3:
        # run_after too: Airflow 3 derives the run ID from run_after (default: now), so a fixed
        # run_after makes both passes run the same DAG run.
        return dag.test(logical_date=LOGICAL_DATE, run_after=LOGICAL_DATE)
    # 2.11: the second pass deletes the run, whose dag_run_note refers to the FAB auth manager's
    # ab_user table: its models must be loaded (as the webserver and `airflow db migrate` do).
    import airflow.providers.fab.auth_manager.models  # noqa: F401

    return dag.test(execution_date=LOGICAL_DATE)


def run_pass(dags, label: str, client) -> list[RunResult]:
    from airflow_bqjobs.core.labels import sanitize_label_value

    results = []
    for dag in dags:
        before = list_jobs(client)
        started = time.monotonic()
        state, tasks, run_id, rows = "error", {}, None, []
        try:
            dag_run = test_dag(dag)
            state = str(getattr(dag_run.state, "value", dag_run.state))
            run_id = dag_run.run_id
            tasks = {
                ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): str(getattr(ti.state, "value", ti.state))
                for ti in dag_run.get_task_instances()
            }
            rows = task_rows(dag, run_id, before, list_jobs(client))
        except Exception:
            traceback.print_exc(file=REPORT)
        result = RunResult(dag.dag_id, state, time.monotonic() - started, tasks, run_id, rows)
        results.append(result)
        failed = sorted(t for t, s in tasks.items() if s != "success")
        say(f"\n{label}: {dag.dag_id}, run {run_id}: {state} in {result.seconds:.1f} s"
            + (f"; tasks not successful: {', '.join(f'{t}={tasks[t]}' for t in failed)}" if failed else ""))
        print_table(rows, ["task", "action", "state", "bytes", "labels", "job id"])
        if run_id:
            say(f"  every job of these tasks also carries airflow-dag={sanitize_label_value(dag.dag_id)},"
                f" airflow-task=<task>, airflow-run={sanitize_label_value(run_id)}")
    return results


def deleted_job_ids(results: list[RunResult]) -> dict[str, str]:
    """{job ID: "dag.task"} of the jobs whose metadata the runs' delete-metadata tasks deleted."""
    return {
        row["job id"]: f"{r.dag_id}.{row['task']}"
        for r in results
        for row in r.rows
        if row.get("action") == "delete metadata: deleted"
    }


def redirect_airflow_output(path: Path) -> None:
    """Send fd 1 and 2 (Airflow's logs, task output) to ``path``; the report keeps the terminal."""
    global REPORT
    REPORT = os.fdopen(os.dup(1), "w", buffering=1)
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dags-folder", type=Path, default=REPO_ROOT / "example_dags")
    parser.add_argument("--dag-id", action="append", help="run only this DAG (repeatable)")
    parser.add_argument("--log-file", type=Path, help="write Airflow's output (full task logs) there")
    parser.add_argument(
        "--expect-no-new-jobs",
        action="store_true",
        help="fail when the second pass creates any job other than re-creations of jobs whose metadata the first deleted",
    )
    args = parser.parse_args(argv)
    if not os.environ.get("BIGQUERY_EMULATOR_HOST"):
        parser.error("BIGQUERY_EMULATOR_HOST is not set: start this through scripts/run_examples.sh")
    if args.log_file:
        redirect_airflow_output(args.log_file)

    started = time.monotonic()
    dags, import_errors = load_dags(args.dags_folder, set(args.dag_id) if args.dag_id else None)
    for name, error in import_errors.items():
        say(f"\nIMPORT ERROR in {name}:\n{error}")
    if not dags:
        say(f"no DAGs found in {args.dags_folder}")
        return 1
    say(f"DAGs: {', '.join(d.dag_id for d in dags)}; each DAG run twice (the same run ID both times)")

    client = bigquery_client()
    at_start = set(list_jobs(client))
    first = run_pass(dags, "First run", client)
    after_first = list_jobs(client)
    deleted_in_first = deleted_job_ids(first)

    second = run_pass(dags, "Second run (same DAG runs again)", client)
    after_second = list_jobs(client)
    deleted_in_second = deleted_job_ids(second)
    new_in_second = sorted(set(after_second) - set(after_first))
    new_in_second += sorted(i for i in deleted_in_second if i not in after_first and i not in new_in_second)
    recreated = [i for i in new_in_second if i in deleted_in_first]
    unexpected = [i for i in new_in_second if i not in deleted_in_first]

    say("\n===== summary =====")
    created_first = (set(after_first) | set(deleted_in_first)) - at_start
    say(f"First run: {len(created_first)} new job(s), {len(set(deleted_in_first))} of them deleted again by its delete"
        f" task; the emulator holds {len(after_first)}.")
    say(f"Second run: {len(unexpected)} new jobs (expected 0): the tasks reused the first run's jobs.")
    if recreated:
        say(f"  Also {len(recreated)} re-created on purpose: the first run deleted their metadata, and with it"
            " their exactly-once record:")
        for job_id in recreated:
            say(f"    {job_id} (deleted by {deleted_in_first[job_id]})")
    for job_id in unexpected:
        job = after_second.get(job_id, {"state": "(metadata deleted)"})
        say(f"  UNEXPECTED new job: {job_id} ({job['state']})")

    failed = [f"import {name}" for name in import_errors]
    failed += [f"first run {r.dag_id}: {r.state}" for r in first if not r.ok]
    failed += [f"second run {r.dag_id}: {r.state}" for r in second if not r.ok]
    if args.expect_no_new_jobs and unexpected:
        failed.append(f"second run created {len(unexpected)} unexpected job(s)")
    say(f"run_examples.py: {time.monotonic() - started:.1f} s")
    if failed:
        say("FAILED: " + "; ".join(failed))
        return 1
    say("OK: every example DAG run succeeded, twice")
    return 0


if __name__ == "__main__":
    code = main()
    # Skip the interpreter's teardown of Airflow's modules, which takes ~2.5 s here; atexit handlers
    # and logging still run first.
    import atexit
    import logging

    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    REPORT.flush()
    os._exit(code)
