"""Deferred waits: N triggers in one asyncio loop, as the triggerer runs them, against the fake.

Each run is a fresh process in its side's venv (Google's real ``BigQueryInsertJobTrigger`` runs in
``.bench-venv``). It inserts N jobs, then starts trigger i at ``i/N * STAGGER_S`` (deferrals arrive
spread out, as in a real triggerer) on a job that still runs ``T_i`` seconds, T_i spread evenly
over ``JOB_S``; the same jobs for every implementation. Measured from the moment the first trigger
starts: requests the fake answered, detection latency (event time minus the job's end on the
fake's clock), process CPU and peak RSS, and ``google.cloud.bigquery.Client`` constructions and TCP
connections opened (counted by wrapping both, on both sides). Both clients reach the fake through
``BIGQUERY_EMULATOR_HOST`` with anonymous credentials, so no OAuth token requests are involved.

    python -m benchmarks.trigger_cost [--n 50 200]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from benchmarks._common import (
    GOOGLE,
    LOCATION,
    OURS,
    PROJECT,
    Report,
    fake_env,
    md_table,
    median,
    percentile,
    run_json,
    start_fake,
)

STAGGER_S = 4.0
JOB_S = (2.0, 12.0)
NS = (50, 200)
# (label, side, poll_interval)
IMPLEMENTATIONS = [
    ("ours, poll_interval=10 (default)", OURS, 10.0),
    ("ours, poll_interval=4", OURS, 4.0),
    ("Google, poll_interval=4 (default)", GOOGLE, 4.0),
]


def job_seconds(i: int) -> float:
    """Job i's remaining run time once its trigger starts: spread over JOB_S, not ordered with i."""
    low, high = JOB_S
    return low + (high - low) * ((i * 0.6180339887) % 1.0)


# -- the worker: one side, one process -----------------------------------------------------------------


def _count_calls(cls, name: str, counter: dict, key: str) -> None:
    original = getattr(cls, name)

    def counted(*args, **kwargs):
        counter[key] += 1
        return original(*args, **kwargs)

    setattr(cls, name, counted)


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def _insert_jobs(url: str, prefix: str, n: int) -> list[float]:
    """Insert the N jobs (job i runs until its trigger has started and T_i passed); their insert times."""
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    def insert(i: int) -> float:
        run_s = i / n * STAGGER_S + job_seconds(i)
        query = f'SELECT {i} /* fakebq: {{"pending_s": 0, "running_s": {run_s:.3f}}} */'
        body = {"jobReference": {"projectId": PROJECT, "jobId": f"{prefix}{i}", "location": LOCATION},
                "configuration": {"query": {"query": query, "useLegacySql": False}}}
        request = urllib.request.Request(f"{url}/bigquery/v2/projects/{PROJECT}/jobs", method="POST",
                                          data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
        return time.time()

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(insert, range(n)))


WARM_IMPORTS = {
    OURS: ["airflow_bqjobs.triggers.job", "airflow_bqjobs.hooks.jobs"],
    GOOGLE: ["airflow.providers.google.cloud.triggers.bigquery"],
}


def make_trigger(side: str, job_id: str, poll_interval: float):
    if side == OURS:
        from airflow_bqjobs.triggers.job import BigQueryJobTrigger

        return BigQueryJobTrigger(job={"projectId": PROJECT, "jobId": job_id, "location": LOCATION},
                                  gcp_conn_id="google_cloud_default", poll_interval=poll_interval)
    from airflow.providers.google.cloud.triggers.bigquery import BigQueryInsertJobTrigger

    return BigQueryInsertJobTrigger(conn_id="google_cloud_default", job_id=job_id, project_id=PROJECT,
                                    location=LOCATION, poll_interval=poll_interval)


def worker(side: str, n: int, poll_interval: float, prefix: str) -> dict:
    import asyncio
    import importlib

    import urllib3
    from google.cloud import bigquery

    # What a running triggerer has imported already: the trigger's module and its hook's.
    for module in WARM_IMPORTS[side]:
        importlib.import_module(module)
    counts = {"clients": 0, "tcp_connects": 0}
    _count_calls(bigquery.Client, "__init__", counts, "clients")
    _count_calls(urllib3.connection.HTTPConnection, "connect", counts, "tcp_connects")
    inserted = _insert_jobs(os.environ["BIGQUERY_EMULATOR_HOST"], prefix, n)

    async def wait(i: int) -> list:
        await asyncio.sleep(max(0.0, inserted[i] + i / n * STAGGER_S - time.time()))
        trigger = make_trigger(side, f"{prefix}{i}", poll_interval)
        try:
            async for event in trigger.run():
                return [f"{prefix}{i}", time.time(), event.payload.get("status")]
        except Exception as exc:  # reported, and counted as a failed wait
            return [f"{prefix}{i}", time.time(), f"exception: {exc!r}"]
        return [f"{prefix}{i}", time.time(), "no event"]

    async def main() -> list:
        return await asyncio.gather(*(wait(i) for i in range(n)))

    rss_before, cpu, wall = _rss_mb(), time.process_time(), time.time()
    events = asyncio.run(main())
    import resource

    return {"events": events, "cpu_s": time.process_time() - cpu, "wall_s": time.time() - wall,
            "rss_before_mb": rss_before, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            **counts}


# -- the orchestrator ----------------------------------------------------------------------------------


def measure_one(fake, side: str, n: int, poll_interval: float) -> dict:
    fake.reset()
    prefix = f"bench_{side}_{n}_{poll_interval:g}_"
    out = run_json(side, ["-m", "benchmarks.trigger_cost", "--worker", side, str(n), str(poll_interval), prefix],
                   env=fake_env(fake.url))
    ends = {job["job_id"]: job["end_at"] for job in fake.jobs}
    waits = [c for c in fake.calls if c["endpoint"] != "insert"]
    latencies = [t - ends[job_id] for job_id, t, _ in out["events"]]
    failed = [status for _, _, status in out["events"] if status not in ("done", "success")]
    return {**out, "requests": len(waits), "failed": failed, "latency": latencies}


def schedule_requests(job_s: float, poll_interval: float, growing: bool) -> int:
    """Polls a trigger makes on a job of ``job_s`` seconds under its schedule (request time ignored)."""
    t, interval, polls = 0.0, min(1.0, poll_interval) if growing else poll_interval, 1
    while t < job_s:
        t += interval
        polls += 1
        if growing:
            interval = min(interval * 1.5, poll_interval)
    return polls


def run(ns: tuple[int, ...] = NS) -> Report:
    rows, by_key = [], {}
    fake = start_fake()
    try:
        for n in ns:
            for label, side, poll in IMPLEMENTATIONS:
                r = measure_one(fake, side, n, poll)
                by_key[(side, poll, n)] = r
                lat = r["latency"]
                rows.append([
                    n, label, r["requests"], f"{r['requests'] / n:.1f}",
                    f"{median(lat):.1f} / {percentile(lat, 95):.1f} / {max(lat):.1f}",
                    f"{r['cpu_s']:.2f}", f"{1000 * r['cpu_s'] / max(1, r['requests']):.1f}",
                    f"{r['peak_rss_mb']:.0f} (+{r['peak_rss_mb'] - r['rss_before_mb']:.0f})",
                    r["clients"], r["tcp_connects"], f"{r['wall_s']:.1f}",
                    f"{len(r['failed'])}" + (f" ({r['failed'][0]})" if r["failed"] else ""),
                ])
    finally:
        fake.stop()

    measured = md_table(
        ["N", "trigger", "requests", "per job", "detection latency s (median / p95 / max)", "CPU s",
         "CPU ms per request", "peak RSS MB (+during wait)", "Client() built", "TCP connects", "wall s",
         "failed waits"], rows)
    durations = [("1 min", 60), ("10 min", 600), ("1 h", 3600)]
    computed = md_table(
        ["requests per job, by job duration", *(d for d, _ in durations)],
        [[label, *(schedule_requests(s, poll, side == OURS) for _, s in durations)]
         for label, side, poll in IMPLEMENTATIONS])

    big = max(ns)
    ours, like, google = (by_key[(OURS, 10.0, big)], by_key[(OURS, 4.0, big)], by_key[(GOOGLE, 4.0, big)])

    def cpu(r: dict) -> str:
        return f"{1000 * r['cpu_s'] / big:.1f} ms ({1000 * r['cpu_s'] / r['requests']:.1f} ms per request)"

    return Report(
        title="Deferred waits (triggerer)",
        what=f"N triggers in one asyncio loop; trigger i starts at i/N x {STAGGER_S:g} s on a job that then runs "
             f"{JOB_S[0]:g}-{JOB_S[1]:g} s more (same jobs for each row). Requests are those the fake answered "
             "during the wait (jobs.get).",
        tables=[measured, "Computed from each trigger's poll schedule (not measured; request time ignored):\n\n"
                + computed],
        notes=[
            "Ours: every trigger registers with its project's shared poller (one `jobs.list` per round, at most "
            "2 s apart or poll_interval if shorter; one `jobs.get` per job that left the list), one session and "
            "one `Client` per connection and project, calls in the poller's own thread pool.",
            "Google (apache-airflow-providers-google, real `BigQueryInsertJobTrigger`): its `BigQueryAsyncHook."
            "get_job_status` runs the sync `BigQueryHook.get_job` through asgiref `sync_to_async` (thread-sensitive: "
            "one thread shared by every trigger in the process) and builds a new `Client`, hence a new HTTP session "
            "and TCP connection, for every poll; fixed poll_interval (default 4 s).",
            "Short jobs favour a fixed 4 s interval in request count; the growing interval pays off on long jobs "
            "(computed table). Detection latency: up to poll_interval after the job ends.",
        ],
        summary=[
            (f"Deferred wait, {big} concurrent jobs of {JOB_S[0]:g}-{JOB_S[1]:g} s: requests per job",
             f"{ours['requests'] / big:.1f} (poll_interval=4: {like['requests'] / big:.1f})",
             f"{google['requests'] / big:.1f}"),
            (f"Deferred wait, {big} jobs: median detection latency",
             f"{median(ours['latency']):.1f} s (poll_interval=4: {median(like['latency']):.1f} s)",
             f"{median(google['latency']):.1f} s"),
            (f"Deferred wait, {big} jobs: triggerer CPU per job", cpu(ours), cpu(google)),
            (f"Deferred wait, {big} jobs: clients built / TCP connections",
             f"{ours['clients']} / {ours['tcp_connects']}", f"{google['clients']} / {google['tcp_connects']}"),
            ("Requests per job for a 1 h job (computed from the poll schedule)",
             f"{schedule_requests(3600, 10, True)} (poll_interval=4: {schedule_requests(3600, 4, True)})",
             f"{schedule_requests(3600, 4, False)}"),
        ],
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        side, n, poll, prefix = sys.argv[2:6]
        print(json.dumps(worker(side, int(n), float(poll), prefix)))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--n", type=int, nargs="+", default=list(NS))
        print(run(tuple(parser.parse_args().n)).markdown())
