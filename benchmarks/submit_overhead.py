"""Submit overhead: the exactly-once path against a plain insert, per job, against the fake.

Every submit builds its hook afresh, as every task run does, and runs one at a time; jobs are DONE
on insert, so nothing waits. Timed per submit (wall and CPU, medians over ``SUBMITS`` after a
warm-up), requests counted by the fake per endpoint.

* ours, exactly-once: ``BigQuerySubmitJobOperator.execute`` (derive the job ID from the run context
  and the configuration, ``jobs.get`` -> 404, ``jobs.insert``, read the result);
* ours, plain insert: ``BigQueryJobsHook.insert_job`` under a random ID (what exactly-once adds to);
* Google: ``BigQueryInsertJobOperator``'s submit: ``BigQueryHook.generate_job_id`` +
  ``insert_job(nowait=True)``, as its ``execute`` calls them (each run gets a new random ID).

    python -m benchmarks.submit_overhead [--submits N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from datetime import datetime, timezone
from types import SimpleNamespace

from benchmarks._common import (
    GOOGLE,
    LOCATION,
    OURS,
    PROJECT,
    QUERY,
    Report,
    fake_env,
    md_table,
    percentile,
    run_json,
    start_fake,
)

SUBMITS = 200
WARM_UP = 5
VARIANTS = {  # name: (side, label)
    "exactly_once": (OURS, "ours: exactly-once (`BigQuerySubmitJobOperator.execute`)"),
    "plain": (OURS, "ours: plain insert (`BigQueryJobsHook.insert_job`, random ID)"),
    "google": (GOOGLE, "Google: `generate_job_id` + `BigQueryHook.insert_job(nowait=True)`"),
}


# -- the worker ----------------------------------------------------------------------------------------


def _context(task, run_id: str) -> dict:
    """What Airflow's task runner hands ``execute``, as far as the operator reads it."""
    ti = SimpleNamespace(dag_id="bench_dag", task_id=task.task_id, map_index=-1, try_number=1, max_tries=0,
                         start_date=datetime.now(timezone.utc), xcom_push=lambda key, value: None)
    return {"ti": ti, "task": task, "run_id": run_id, "dag_run": SimpleNamespace(clear_number=0)}


def submitter(variant: str):
    """A function submitting job number i the variant's way."""
    if variant == "exactly_once":
        from airflow_bqjobs.operators import BigQuerySubmitJobOperator

        op = BigQuerySubmitJobOperator(task_id="submit", configuration=QUERY, project_id=PROJECT, location=LOCATION)
        return lambda i: op.execute(_context(op, f"bench_run_{i}"))
    if variant == "plain":
        from airflow_bqjobs.core.job_ref import JobRef
        from airflow_bqjobs.hooks.jobs import BigQueryJobsHook

        return lambda i: BigQueryJobsHook(project_id=PROJECT, location=LOCATION).insert_job(
            JobRef(f"plain_{uuid.uuid4().hex}"), QUERY)
    from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook

    def submit(i: int):
        hook = BigQueryHook(gcp_conn_id="google_cloud_default", location=LOCATION)
        job_id = hook.generate_job_id(job_id=None, dag_id="bench_dag", task_id="submit", logical_date=None,
                                      configuration=QUERY, run_after=datetime.now(timezone.utc), force_rerun=True)
        return hook.insert_job(configuration=QUERY, job_id=job_id, project_id=PROJECT, location=LOCATION,
                               nowait=True)

    return submit


def worker(variant: str, submits: int) -> dict:
    from tests.fakebq.remote import RemoteFakeBigQuery

    fake = RemoteFakeBigQuery(os.environ["BIGQUERY_EMULATOR_HOST"])
    submit = submitter(variant)
    fake.set_defaults(pending_s=0, running_s=0)
    for i in range(WARM_UP):  # lazy imports, first connections
        submit(-1 - i)
    fake.reset()  # the orchestrator counts only the measured submits' calls
    fake.set_defaults(pending_s=0, running_s=0)
    walls, cpus = [], []
    for i in range(submits):
        wall, cpu = time.perf_counter(), time.process_time()
        submit(i)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"wall": walls, "cpu": cpus}


# -- the orchestrator ----------------------------------------------------------------------------------


def run(submits: int = SUBMITS) -> Report:
    results = {}
    fake = start_fake()
    try:
        for variant, (side, _) in VARIANTS.items():
            fake.reset()
            out = run_json(side, ["-m", "benchmarks.submit_overhead", "--worker", variant, str(submits)],
                           env=fake_env(fake.url))
            results[variant] = {**out, "calls": fake.call_counts, "errors": sum(
                1 for c in fake.calls if (c["status"] or 599) >= 400 and c["status"] != 404)}
    finally:
        fake.stop()

    def requests(r: dict) -> str:
        per_job = {k: v / submits for k, v in sorted(r["calls"].items())}
        return f"{sum(per_job.values()):g} ({', '.join(f'{k} {v:g}' for k, v in per_job.items())})"

    def ms(values: list[float], pct: float = 50) -> str:
        return f"{1000 * percentile(values, pct):.1f}"

    rows = [[label, requests(results[v]), f"{ms(results[v]['wall'])} / {ms(results[v]['wall'], 95)}",
             ms(results[v]["cpu"]), results[v]["errors"]] for v, (_, label) in VARIANTS.items()]
    table = md_table(["submit path (fresh hook each)", "requests per job", "wall ms (median / p95)", "CPU ms (median)",
                      "unexpected errors"], rows)
    once, plain, google = (results[v] for v in VARIANTS)
    return Report(
        title="Submit overhead (exactly-once)",
        what=f"{submits} sequential submits per row after {WARM_UP} warm-up ones; jobs are DONE on insert.",
        tables=[table],
        notes=["Ours sends `jobs.get` before `jobs.insert` to find an earlier attempt's job (404 for a first "
               "attempt); that read is the price of exactly-once. Google's submit needs no read, and a retry of its "
               "task starts a second job under a new ID."],
        summary=[
            ("Submit: requests per job", f"{sum(once['calls'].values()) / submits:g} (get + insert)",
             f"{sum(google['calls'].values()) / submits:g} (insert)"),
            ("Submit: wall per job, median (plain insert through our hook)",
             f"{ms(once['wall'])} ms ({ms(plain['wall'])} ms)", f"{ms(google['wall'])} ms"),
        ],
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        print(json.dumps(worker(sys.argv[2], int(sys.argv[3]))))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--submits", type=int, default=SUBMITS)
        print(run(parser.parse_args().submits).markdown())
