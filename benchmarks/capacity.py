"""Triggerer capacity: N triggers waiting in one process, ours (shared poller), today's and Google's.

The workload of issue 9: N triggers in one asyncio loop, as one triggerer runs them, trigger i
starting at i/N x STAGGER_S on a job that then runs 60-300 s more (spread evenly, the same jobs for
every side), each side at its default interval. Every run has its own fake BigQuery process (one
side's load never slows another's server) and its own local token endpoint: each side reaches the
fake with a real service-account key (``keyfile_dict``), so OAuth token requests are real and
counted. Sides:

* ours: this checkout (``BigQueryJobTrigger`` on the shared poller);
* today: the trigger before the shared poller (commit ``TODAY_REF``, one ``jobs.get`` loop per
  trigger), from a ``git archive``, in the same venv;
* Google: apache-airflow-providers-google's real ``BigQueryInsertJobTrigger`` (``.bench-venv``).

Runs of one phase go concurrently (phases: N = 100 together with N = 1,000 plus 50 ms added by the
fake to every jobs.get / jobs.list answer; then N = 1,000; then N = 5,000), so the 2 cores are shared by
the sides of a phase: figures are comparable within a phase.

Figures: requests the fake answered while the triggers waited (per job, per minute: mean and the
busiest minute), detection latency (event time minus the job's end on the fake's clock), event
loop lag (a 100 ms ticker's overshoot), RSS per waiting trigger (``VmRSS`` from /proc: growth from
10% to 100% of the triggers started, divided by the 90% added, so fixed costs such as imports and
the first client do not count), peak open file descriptors and threads (/proc/self/fd, /task),
process CPU per job, and token requests.

    flock /tmp/bqjobs-heavy.lock timeout 3600 .venv/bin/python -m benchmarks.capacity
    .venv/bin/python -m benchmarks.capacity --quick        # N=20, jobs of 10-30 s (a smoke run)
    flock /tmp/bqjobs-heavy.lock timeout 3600 .venv/bin/python -m benchmarks.capacity --n 5000 --isolate \
        --sides ours google                                # each side alone on the cores (~14 min)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks._common import GOOGLE, OURS, PROJECT, REPO_ROOT, Report, child_env, md_table, median, percentile
from benchmarks._common import python_for as _python_for

TODAY = "today"
# The trigger before the shared poller (main at 58e479b: one jobs.get loop per trigger).
TODAY_REF = os.environ.get("BENCH_TODAY_REF", "58e479b")
LOCATION = "US"
STAGGER_S = 30.0
JOB_S = (60.0, 300.0)
GRACE_S = 60.0
NS = (100, 1000, 5000)
LATENCY = (1000, 0.05)  # (N, seconds added to every jobs.get / jobs.list answer)
SIDES = (OURS, TODAY, GOOGLE)
LABELS = {OURS: "ours (shared poller)", TODAY: "today (main: one loop per trigger)",
          GOOGLE: "Google BigQueryInsertJobTrigger"}


def python_for(side: str) -> str:
    return _python_for(OURS if side == TODAY else side)


def job_seconds(i: int, job_s: tuple[float, float]) -> float:
    low, high = job_s
    return low + (high - low) * ((i * 0.6180339887) % 1.0)


# -- the worker: one side, one process ---------------------------------------------------------------


def _proc_status() -> dict:
    with open("/proc/self/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return {"rss_kb": rss, "fds": len(os.listdir("/proc/self/fd")), "threads": len(os.listdir("/proc/self/task"))}


def _insert_jobs(url: str, prefix: str, n: int, stagger: float, job_s) -> list[float]:
    import urllib.request

    def insert(i: int) -> float:
        run_s = i / n * stagger + job_seconds(i, job_s)
        query = f'SELECT {i} /* fakebq: {{"pending_s": 0, "running_s": {run_s:.3f}}} */'
        body = {"jobReference": {"projectId": PROJECT, "jobId": f"{prefix}{i}", "location": LOCATION},
                "configuration": {"query": {"query": query, "useLegacySql": False}}}
        request = urllib.request.Request(f"{url}/bigquery/v2/projects/{PROJECT}/jobs", method="POST",
                                         data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
        return time.time()

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(insert, range(n)))


def _point_google_clients_at(fake_url: str, auth_base: str) -> None:
    """Real credentials, local servers: BigQuery's default endpoint is the fake, and google-auth's
    background access-boundary lookup goes to the local auth server (as tests/reliability do)."""
    from google.cloud.bigquery import _http

    _http.Connection.DEFAULT_API_ENDPOINT = fake_url
    try:
        from google.auth import _regional_access_boundary_utils as boundary
    except ImportError:
        return
    boundary.get_service_account_rab_endpoint = (
        lambda email: f"{auth_base}/v1/projects/-/serviceAccounts/{email}/allowedLocations")


def make_trigger(side: str, job_id: str):
    if side in (OURS, TODAY):
        from airflow_bqjobs.triggers.job import BigQueryJobTrigger

        return BigQueryJobTrigger(job={"projectId": PROJECT, "jobId": job_id, "location": LOCATION},
                                  gcp_conn_id="google_cloud_default")
    from airflow.providers.google.cloud.triggers.bigquery import BigQueryInsertJobTrigger

    return BigQueryInsertJobTrigger(conn_id="google_cloud_default", job_id=job_id, project_id=PROJECT,
                                    location=LOCATION)


def worker(side: str, n: int, prefix: str, stagger: float, job_s: tuple[float, float], fake_url: str,
           auth_base: str) -> dict:
    import asyncio
    import importlib

    # What a running triggerer has imported already: the trigger's module and the Google client.
    for module in ("google.cloud.bigquery", "google.auth.transport.requests",
                   *(("airflow_bqjobs.triggers.job", "airflow_bqjobs.hooks.jobs") if side != GOOGLE else
                     ("airflow.providers.google.cloud.triggers.bigquery",))):
        importlib.import_module(module)
    _point_google_clients_at(fake_url, auth_base)
    where = None
    if side != GOOGLE:
        import airflow_bqjobs

        where = os.path.dirname(airflow_bqjobs.__file__)
    inserted = _insert_jobs(fake_url, prefix, n, stagger, job_s)
    last_end = max(t + i / n * stagger + job_seconds(i, job_s) for i, t in enumerate(inserted))
    started = [0]
    samples, lags = [], []

    async def wait(i: int) -> list:
        await asyncio.sleep(max(0.0, inserted[i] + i / n * stagger - time.time()))
        trigger = make_trigger(side, f"{prefix}{i}")
        started[0] += 1
        try:
            async for event in trigger.run():
                return [f"{prefix}{i}", time.time(), event.payload.get("status")]
        except Exception as exc:  # reported, and counted as a failed wait
            return [f"{prefix}{i}", time.time(), f"exception: {exc!r}"[:300]]
        return [f"{prefix}{i}", time.time(), "no event"]

    async def ticker(stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_sample = 0.0
        while not stop.is_set():
            t = loop.time()
            await asyncio.sleep(0.1)
            lags.append(loop.time() - t - 0.1)
            if t >= next_sample:
                samples.append({"t": time.time(), "started": started[0], **_proc_status()})
                next_sample = t + 1.0

    async def main() -> list:
        stop = asyncio.Event()
        tick = asyncio.ensure_future(ticker(stop))
        tasks = [asyncio.ensure_future(wait(i)) for i in range(n)]
        done, pending = await asyncio.wait(tasks, timeout=max(1.0, last_end + GRACE_S - time.time()))
        for task in pending:
            task.cancel()
        stop.set()
        await tick
        return [t.result() for t in done]

    stall_log = os.environ.get("BENCH_STALL_LOG")
    if stall_log:  # diagnostics: the loop thread's stack whenever the loop stalls for over 2 s
        _watch_stalls(stall_log, lags)
    cpu, wall = time.process_time(), time.time()
    events = asyncio.run(main())
    return {"events": events, "cpu_s": time.process_time() - cpu, "wall_s": time.time() - wall,
            "samples": samples, "lags": lags, "where": where}


def _watch_stalls(path: str, lags: list) -> None:
    import sys as _sys
    import threading
    import traceback

    main_id = threading.get_ident()

    def watch() -> None:
        seen = len(lags)
        quiet = 0.0
        while True:
            time.sleep(0.5)
            quiet = quiet + 0.5 if len(lags) == seen else 0.0
            seen = len(lags)
            if quiet >= 2.0 and seen:
                frame = _sys._current_frames().get(main_id)
                with open(path, "a") as out:
                    out.write(f"--- loop stalled {quiet:.1f} s at {time.time():.0f}\n")
                    out.write("".join(traceback.format_stack(frame)) if frame else "no frame\n")

    threading.Thread(target=watch, daemon=True).start()


# -- the orchestrator -------------------------------------------------------------------------------


def _today_tree() -> str:
    """The package at TODAY_REF with this checkout's benchmarks, in a temporary directory."""
    root = tempfile.mkdtemp(prefix="bqjobs-bench-today-")
    git_dir = os.environ.get("BENCH_GIT_DIR", str(REPO_ROOT))  # a snapshot of the checkout names its repo
    archive = subprocess.run(["git", "archive", TODAY_REF, "airflow_bqjobs"], cwd=git_dir, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", root], input=archive, check=True)
    shutil.copytree(REPO_ROOT / "benchmarks", os.path.join(root, "benchmarks"),
                    ignore=shutil.ignore_patterns("results.md", "__pycache__"))
    return root


def _start_auth():
    from tests.reliability.fake_google_auth import TokenEndpoint, make_service_account

    endpoint = TokenEndpoint().start()
    account = make_service_account(endpoint.url, project=PROJECT)
    endpoint.accounts.append(account)
    return endpoint, account


def run_one(side: str, n: int, latency_s: float, stagger: float, job_s, today_root: str | None) -> dict:
    from tests.fakebq.remote import FakeBigQueryProcess

    fake = FakeBigQueryProcess.start(python=python_for(OURS))
    auth, account = _start_auth()
    try:
        if latency_s:
            for endpoint in ("get", "list"):
                fake.inject("delay", endpoint, delay_s=latency_s)
        prefix = f"cap_{side}_{n}_"
        connection = json.dumps({"conn_type": "google_cloud_platform",
                                 "extra": {"project": PROJECT, "keyfile_dict": account.keyfile_json}})
        env = child_env(AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT=connection)
        if os.environ.get("BENCH_STALL_LOG"):
            env["BENCH_STALL_LOG"] = f"{os.environ['BENCH_STALL_LOG']}.{side}.{n}"
        cwd = REPO_ROOT
        if side == TODAY:
            cwd, env["PYTHONPATH"] = today_root, today_root
        args = ["-m", "benchmarks.capacity", "--worker", side, str(n), prefix, str(stagger), json.dumps(job_s),
                fake.url, auth.base_url]
        proc = subprocess.run([python_for(side), *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=stagger + job_s[1] + GRACE_S + 900, check=False)
        if proc.returncode != 0 or not proc.stdout.strip():
            raise RuntimeError(f"[{side} N={n}] exited {proc.returncode}:\n{proc.stderr[-4000:]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        ends = {job["job_id"]: job["end_at"] for job in fake.jobs}
        waits = [c for c in fake.calls if c["endpoint"] != "insert"]
        return {**out, "side": side, "n": n, "latency_s": latency_s, "ends": ends, "waits": waits,
                "tokens": auth.verified_assertions}
    finally:
        fake.stop()
        auth.stop()


def figures(r: dict) -> dict:
    n = r["n"]
    events = r["events"]
    ok = [(job_id, t) for job_id, t, status in events if status in ("done", "success")]
    latency = [t - r["ends"][job_id] for job_id, t in ok] or [float("nan")]
    waits = r["waits"]
    t0 = min((c["time"] for c in waits), default=0.0)
    t1 = max((c["time"] for c in waits), default=0.0)
    minutes = max(1.0, (t1 - t0) / 60)
    per_minute: dict[int, int] = {}
    for c in waits:
        per_minute[int((c["time"] - t0) // 60)] = per_minute.get(int((c["time"] - t0) // 60), 0) + 1
    samples = r["samples"]
    at = lambda frac: next((s for s in samples if s["started"] >= frac * n), samples[-1])  # noqa: E731
    first_end = min(r["ends"].values())
    full = [s for s in samples if s["started"] >= n and s["t"] < first_end] or [at(1.0)]
    rss_full = max(s["rss_kb"] for s in full)
    rss_10 = at(0.1)["rss_kb"]
    lags = sorted(r["lags"]) or [0.0]
    by_kind: dict[str, int] = {}
    for c in waits:
        by_kind[c["endpoint"]] = by_kind.get(c["endpoint"], 0) + 1
    return {
        "requests": len(waits), "per_job": len(waits) / n, "per_min": len(waits) / minutes,
        "max_min": max(per_minute.values(), default=0), "kinds": by_kind,
        "p50": median(latency), "p95": percentile(latency, 95), "max": max(latency),
        "lag_p99": 1000 * percentile(lags, 99), "lag_max": 1000 * lags[-1],
        "rss_per_trigger_kb": (rss_full - rss_10) / (0.9 * n), "rss_mb": rss_full / 1024,
        "fds": max(s["fds"] for s in samples), "threads": max(s["threads"] for s in samples),
        "cpu_ms_per_job": 1000 * r["cpu_s"] / n, "tokens": r["tokens"],
        "failed": n - len(ok), "failures": sorted({str(s) for _, _, s in events if s not in ("done", "success")})[:2],
    }


PHASES_FULL = [[(100, 0.0), LATENCY], [(1000, 0.0)], [(5000, 0.0)]]
# A smoke run (``--quick``, and ``scripts/bench.sh --quick``): about 4 minutes.
QUICK = {"phases": [[(20, 0.0), (200, 0.0)], [(200, 0.05)]], "stagger": 5.0, "job_s": (10.0, 30.0)}


def run(phases=None, stagger: float = STAGGER_S, job_s=JOB_S, sides=SIDES, isolate: bool = False) -> Report:
    """``isolate``: the runs of a phase go one after another, each with the machine to itself."""
    phases = phases or PHASES_FULL
    today_root = _today_tree() if TODAY in sides else None
    results = []
    try:
        for phase in phases:
            runs = [(side, n, lat) for n, lat in phase for side in sides]
            print(f"[capacity] phase {phase}: {len(runs)} runs {'one at a time' if isolate else 'at once'}",
                  file=sys.stderr, flush=True)
            started = time.time()
            with ThreadPoolExecutor(1 if isolate else len(runs)) as pool:
                futures = [pool.submit(run_one, side, n, lat, stagger, job_s, today_root) for side, n, lat in runs]
                results += [f.result() for f in futures]
            print(f"[capacity] phase took {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    finally:
        if today_root:
            shutil.rmtree(today_root, ignore_errors=True)

    rows, by_key = [], {}
    for r in results:
        f = figures(r)
        by_key[(r["side"], r["n"], r["latency_s"])] = f
        rows.append([
            f"{r['n']:,}" + (f" +{1000 * r['latency_s']:.0f} ms" if r["latency_s"] else ""), LABELS[r["side"]],
            f"{f['per_job']:.2f}", f"{f['per_min']:.0f} / {f['max_min']}",
            f"{f['p50']:.1f} / {f['p95']:.1f} / {f['max']:.1f}", f"{f['lag_p99']:.0f} / {f['lag_max']:.0f}",
            f"{f['rss_per_trigger_kb']:.1f}", f"{f['fds']}", f"{f['threads']}", f"{f['cpu_ms_per_job']:.1f}",
            f"{f['tokens']}", f"{f['failed']}" + (f" ({f['failures'][0]})" if f["failures"] else ""),
        ])
    table = md_table(["N", "trigger", "requests per job", "requests per minute (mean / busiest)",
                      "detection s (p50 / p95 / max)", "loop lag ms (p99 / max)", "KB RSS per waiting trigger",
                      "open fds (max)", "threads (max)", "CPU ms per job", "token requests", "missed"], rows)
    kinds = md_table(["N", "trigger", "requests by kind"],
                     [[f"{r['n']:,}" + (" +latency" if r["latency_s"] else ""), LABELS[r["side"]],
                       ", ".join(f"{k} {v}" for k, v in sorted(by_key[(r["side"], r["n"], r["latency_s"])]
                                                                 ["kinds"].items()))] for r in results])
    ratios = []
    for (side, n, lat), f in sorted(by_key.items(), key=lambda kv: (kv[0][2], kv[0][1])):
        if side != OURS:
            continue
        for other in (GOOGLE, TODAY):
            o = by_key.get((other, n, lat))
            if o:
                ratios.append([f"{n:,}" + (" +latency" if lat else ""), f"vs {LABELS[other]}",
                               f"{o['per_job'] / f['per_job']:.1f}x fewer",
                               f"{f['p95']:.1f} s vs {o['p95']:.1f} s", f"{f['fds']} vs {o['fds']}",
                               f"{f['tokens']} vs {o['tokens']}"])
    ratio_table = md_table(["N", "ours", "requests per job", "detection p95", "open fds", "token requests"], ratios)
    return Report(
        title="Triggerer capacity (shared poller)",
        what=f"N triggers in one process; trigger i starts at i/N x {stagger:g} s on a job that then runs "
             f"{job_s[0]:g}-{job_s[1]:g} s more; each side at its defaults, with a service-account key against a "
             "local token endpoint. One fake BigQuery process per run; "
             + ("each run alone on the machine (--isolate)." if isolate else
                "the runs of a phase (same N block) go concurrently on the machine's cores."),
        tables=[table, kinds, ratio_table],
        notes=["Requests: everything the fake answered after the inserts (jobs.get, jobs.list pages).",
               "RSS per waiting trigger: VmRSS growth between 10% and 100% of the triggers started, over the 90% "
               "added (fixed costs excluded).",
               "`+50 ms`: the fake adds 50 ms to every jobs.get / jobs.list answer."],
        summary=[(f"Capacity N={n:,}{' +50 ms' if lat else ''}: requests per job / detection p95 / open fds / "
                  "token requests", f"{f['per_job']:.2f} / {f['p95']:.1f} s / {f['fds']} / {f['tokens']}",
                  (lambda o: f"{o['per_job']:.2f} / {o['p95']:.1f} s / {o['fds']} / {o['tokens']}" if o else "-")(
                      by_key.get((GOOGLE, n, lat))))
                 for (side, n, lat), f in sorted(by_key.items(), key=lambda kv: (kv[0][2], kv[0][1]))
                 if side == OURS],
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        side, n, prefix, stagger, job_s, fake_url, auth_base = sys.argv[2:9]
        print(json.dumps(worker(side, int(n), prefix, float(stagger), tuple(json.loads(job_s)), fake_url,
                                auth_base)))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--quick", action="store_true", help="N=20 and 200, jobs of 10-30 s")
        parser.add_argument("--sides", nargs="+", default=list(SIDES), choices=SIDES)
        parser.add_argument("--isolate", action="store_true",
                            help="run the sides of a phase one after another, not at once (no CPU shared)")
        parser.add_argument("--n", type=int, nargs="+", choices=NS, help="only the phases of these N")
        opts = parser.parse_args()
        settings = dict(QUICK) if opts.quick else {"phases": PHASES_FULL}
        if opts.n:
            settings["phases"] = [[(n, lat) for n, lat in phase if n in opts.n] for phase in settings["phases"]]
            settings["phases"] = [phase for phase in settings["phases"] if phase]
        report = run(**settings, sides=tuple(opts.sides), isolate=opts.isolate)
        print(report.markdown())
        name = "capacity-quick" if opts.quick else "capacity"
        if opts.isolate or opts.n:
            name += "-isolated" if opts.isolate else ""
            name += "".join(f"-{n}" for n in opts.n or ())
        out = REPO_ROOT / "benchmarks" / f"{name}.md"
        out.write_text(report.markdown())
        print(f"written: {out}", file=sys.stderr)
