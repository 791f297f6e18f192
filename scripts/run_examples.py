"""Run every example DAG in example_dags/ end to end against a BigQuery endpoint (the emulator).

Started by scripts/run_examples.sh, which provides the environment: BIGQUERY_EMULATOR_HOST, a
temporary AIRFLOW_HOME with a migrated metadata DB, AIRFLOW__CORE__DAGS_FOLDER=example_dags.

1. Parses example_dags/ with Airflow's DagBag and collects its DAGs and import errors.
2. First pass: ``dag.test(logical_date=LOGICAL_DATE, run_after=LOGICAL_DATE)`` for each DAG (run ID
   ``manual__2025-01-01T00:00:00+00:00``), then prints the jobs the endpoint holds (``jobs.list``:
   id, type, state, error).
   It also reads, from Airflow's metadata DB, the return values of the first pass's
   delete-metadata tasks (BigQueryDeleteJobMetadataOperator): the jobs whose metadata they deleted.
3. Second pass: the same DAG runs again (``dag.test()`` deletes the run and creates it afresh under
   the same run ID, task try numbers starting at 1 again), then prints how many jobs appeared and
   how many of them are re-creations of the jobs the first pass deleted (new jobs are those listed
   now but not after the first pass, plus those the second pass's delete tasks deleted that were not
   there after the first pass: created and deleted again within the pass). Job IDs are deterministic,
   so the tasks reattach to the first pass's jobs; only a job whose metadata was deleted (and with
   it the exactly-once record) is legitimately created again. Any other new job is unexpected.

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
JOB_COLUMNS = ["id", "type", "state", "error"]


@dataclass
class RunResult:
    dag_id: str
    state: str
    seconds: float
    tasks: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None

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


def list_jobs(client) -> list[dict]:
    jobs = []
    for job in client.list_jobs(all_users=True, max_results=10_000):
        error = job.error_result or {}
        jobs.append(
            {
                "id": job.job_id,
                "type": job.job_type,
                "state": job.state,
                "error": f"{error.get('reason', '')}: {error.get('message', '')}" if error else "",
                "created": job.created.strftime("%H:%M:%S") if job.created else "",
            }
        )
    return jobs


def print_table(rows: list[dict], columns: list[str], truncate: dict[str, int] | None = None) -> None:
    if not rows:
        print("  (none)")
        return
    truncate = truncate or {}

    def cell(row, column) -> str:
        text = " ".join(str(row.get(column) if row.get(column) is not None else "").split())
        limit = truncate.get(column)
        return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."

    widths = {c: max(len(c), *(len(cell(r, c)) for r in rows)) for c in columns}
    print("  " + "  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    print("  " + "  ".join("-" * widths[c] for c in columns))
    for row in rows:
        print("  " + "  ".join(cell(row, c).ljust(widths[c]) for c in columns).rstrip())


def run_pass(dags, label: str) -> list[RunResult]:
    results = []
    for dag in dags:
        print(f"\n===== {label}: {dag.dag_id} (logical date {LOGICAL_DATE.isoformat()}) =====", flush=True)
        started = time.monotonic()
        state, tasks, run_id = "error", {}, None
        try:
            # run_after too: Airflow 3.3 derives the run ID from run_after (default: now), so a
            # fixed run_after makes both passes run the same DAG run, manual__<LOGICAL_DATE>.
            dag_run = dag.test(logical_date=LOGICAL_DATE, run_after=LOGICAL_DATE)
            state = str(getattr(dag_run.state, "value", dag_run.state))
            run_id = dag_run.run_id
            tasks = {
                ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): str(
                    getattr(ti.state, "value", ti.state)
                )
                for ti in dag_run.get_task_instances()
            }
        except Exception:
            traceback.print_exc()
        results.append(RunResult(dag.dag_id, state, time.monotonic() - started, tasks, run_id))
    return results


def deleted_job_ids(dags, results: list[RunResult]) -> dict[str, str]:
    """{job ID: "dag.task"} of the jobs whose metadata the runs' delete-metadata tasks deleted.

    Read from the return values (XCom ``return_value``) the tasks left in Airflow's metadata DB: one
    entry per job, ``{"job": <jobReference>, "outcome", ...}``; only ``deleted`` ones count.
    """
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from airflow_bqjobs.operators import BigQueryDeleteJobMetadataOperator

    deleted = {}
    run_ids = {r.dag_id: r.run_id for r in results if r.run_id}
    with create_session() as session:
        for dag in dags:
            task_ids = [t.task_id for t in dag.tasks if isinstance(t, BigQueryDeleteJobMetadataOperator)]
            if not task_ids or dag.dag_id not in run_ids:
                continue
            query = XComModel.get_many(
                run_id=run_ids[dag.dag_id], key="return_value", dag_ids=dag.dag_id, task_ids=task_ids
            )
            for xcom in session.scalars(query):
                for entry in XComModel.deserialize_value(xcom) or []:
                    if entry.get("outcome") == "deleted":
                        deleted[entry["job"]["jobId"]] = f"{dag.dag_id}.{xcom.task_id}"
    return deleted


def print_runs(results: list[RunResult]) -> None:
    print_table(
        [
            {
                "dag": r.dag_id,
                "state": r.state,
                "seconds": f"{r.seconds:.1f}",
                "tasks": ", ".join(f"{t}={s}" for t, s in sorted(r.tasks.items())),
            }
            for r in results
        ],
        ["dag", "state", "seconds", "tasks"],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dags-folder", type=Path, default=REPO_ROOT / "example_dags")
    parser.add_argument("--dag-id", action="append", help="run only this DAG (repeatable)")
    parser.add_argument(
        "--expect-no-new-jobs",
        action="store_true",
        help="fail when the second pass creates any job other than re-creations of jobs whose metadata the first deleted",
    )
    args = parser.parse_args(argv)
    if not os.environ.get("BIGQUERY_EMULATOR_HOST"):
        parser.error("BIGQUERY_EMULATOR_HOST is not set: start this through scripts/run_examples.sh")

    started = time.monotonic()
    dags, import_errors = load_dags(args.dags_folder, set(args.dag_id) if args.dag_id else None)
    for name, error in import_errors.items():
        print(f"\nIMPORT ERROR in {name}:\n{error}", file=sys.stderr)
    if not dags:
        print(f"no DAGs found in {args.dags_folder}", file=sys.stderr)
        return 1
    print(f"DAGs: {', '.join(d.dag_id for d in dags)}")

    client = bigquery_client()
    before = {j["id"] for j in list_jobs(client)}

    first = run_pass(dags, "first run")
    jobs_after_first = list_jobs(client)
    first_ids = {j["id"] for j in jobs_after_first}
    # Deleting a job's metadata erases its exactly-once record: the second pass may re-create it.
    deleted_in_first = deleted_job_ids(dags, first)

    second = run_pass(dags, "second run (same DAG runs again)")
    jobs_after_second = list_jobs(client)
    # A job the second pass created and then deleted is no longer listed: its delete task says so.
    deleted_in_second = deleted_job_ids(dags, second)
    new_in_second = [j for j in jobs_after_second if j["id"] not in first_ids]
    new_in_second += [
        {"id": i, "state": "(metadata deleted)", "error": f"deleted by {t}"}
        for i, t in sorted(deleted_in_second.items())
        if i not in first_ids and i not in {j["id"] for j in new_in_second}
    ]
    recreated = [dict(j, deleted_by=deleted_in_first[j["id"]]) for j in new_in_second if j["id"] in deleted_in_first]
    unexpected = [j for j in new_in_second if j["id"] not in deleted_in_first]

    print("\n===== summary =====")
    print("\nFirst run:")
    print_runs(first)
    print(f"\nJobs in the emulator after the first run ({len(first_ids - before)} new, {len(first_ids)} in all):")
    print_table(jobs_after_first, JOB_COLUMNS, {"error": 100})
    print(f"\nJobs whose metadata the first run deleted: {len(deleted_in_first)}")
    if deleted_in_first:
        print_table([{"id": i, "deleted_by": t} for i, t in sorted(deleted_in_first.items())], ["id", "deleted_by"])
    print("\nSecond run of the same DAG runs:")
    print_runs(second)
    print(f"\nNew jobs created by the second run: {len(new_in_second)}")
    print(f"  of which re-creations of jobs the first run deleted: {len(recreated)}")
    if recreated:
        print_table(recreated, ["id", "state", "deleted_by"])
    print(f"  unexpected: {len(unexpected)} (expected 0)")
    if unexpected:
        print_table(unexpected, JOB_COLUMNS, {"error": 100})

    failed = [f"import {name}" for name in import_errors]
    failed += [f"first run {r.dag_id}: {r.state}" for r in first if not r.ok]
    failed += [f"second run {r.dag_id}: {r.state}" for r in second if not r.ok]
    if args.expect_no_new_jobs and unexpected:
        failed.append(f"second run created {len(unexpected)} unexpected job(s)")
    print(f"\nrun_examples.py: {time.monotonic() - started:.1f} s")
    if failed:
        print("FAILED: " + "; ".join(failed), file=sys.stderr)
        return 1
    print("OK: every example DAG run succeeded, twice")
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
    os._exit(code)
