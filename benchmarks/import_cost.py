"""DAG-parse cost: what importing each provider's operators adds to every DAG file that uses them.

Every case runs in a fresh interpreter, ``REPS`` times, the cases interleaved so that changing machine
load hits them alike; figures are medians. The child first imports ``airflow.sdk`` (which every DAG
file pays anyway; untimed), then times the statement under test: so each figure is the cost *above*
Airflow, measured inside one process (subtracting two processes' timings would be mostly noise on a
shared machine). Wall and CPU time, the memory the statement added (peak RSS minus RSS before it),
and which modules got loaded. A baseline row times ``import airflow.sdk`` itself.

    python -m benchmarks.import_cost [--reps N]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks._common import GOOGLE, OURS, REPO_ROOT, Report, md_table, median, run_json

REPS = 7
AIRFLOW = "import airflow.sdk"

# Runs in the child: exec argv[1] (untimed), then time argv[2]; report its cost and what is loaded.
PROBE = r"""
import json, resource, sys, time
exec(sys.argv[1], {})
with open("/proc/self/status") as status:
    rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
wall, cpu = time.perf_counter(), time.process_time()
exec(sys.argv[2], {"__name__": "__probe__"})
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
names = list(sys.modules)
count = lambda p: sum(n == p or n.startswith(p + ".") for n in names)
print(json.dumps({"wall": wall, "cpu": cpu, "peak_rss": peak, "added_rss": peak - rss, "modules": len(names),
                  "google.cloud": count("google.cloud"), "aiohttp": count("aiohttp"), "pandas": count("pandas")}))
"""

DAG_FILE = """\
from datetime import datetime
from airflow.sdk import DAG
from {module} import {operator}

with DAG("bench_parse", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    for i in range(5):
        {operator}(task_id=f"query_{{i}}", configuration={{"query": {{"query": "SELECT 1"}}}}, location="US")
"""
OPERATORS = {  # side: (module, class)
    OURS: ("airflow_bqjobs.operators", "BigQuerySubmitJobOperator"),
    GOOGLE: ("airflow.providers.google.cloud.operators.bigquery", "BigQueryInsertJobOperator"),
}


def our_public_modules() -> list[str]:
    """Every public operator, sensor and trigger module of the package, as it stands in the tree."""
    package = REPO_ROOT / "airflow_bqjobs"
    return [
        f"airflow_bqjobs.{kind}.{path.stem}"
        for kind in ("operators", "sensors", "triggers")
        for path in sorted((package / kind).glob("*.py"))
        if not path.name.startswith("_")
    ]


def write_dag(folder: Path, side: str) -> str:
    """A DAG file of five tasks using the side's operator; returns the statement that parses it."""
    module, operator = OPERATORS[side]
    path = folder / f"dag_{side}.py"
    path.write_text(DAG_FILE.format(module=module, operator=operator))
    return f"import runpy; runpy.run_path({str(path)!r})"


def measure(cases: dict[str, tuple[str, str, str]], reps: int) -> dict[str, dict[str, float]]:
    """Median of every figure per case; cases run round-robin, one fresh interpreter each."""
    samples: dict[str, list[dict]] = {key: [] for key in cases}
    for _ in range(reps):
        for key, (side, setup, statement) in cases.items():
            samples[key].append(run_json(side, ["-c", PROBE, setup, statement]))
    return {key: {f: median(s[f] for s in runs) for f in runs[0]} for key, runs in samples.items()}


def run(reps: int = REPS) -> Report:
    modules = our_public_modules()
    with tempfile.TemporaryDirectory(prefix="bqjobs-bench-dags-") as tmp:
        folder = Path(tmp)
        cases = {  # key: (side, untimed setup, timed statement)
            "base_ours": (OURS, "", AIRFLOW),
            "ours_op": (OURS, AIRFLOW, "from {} import {}".format(*OPERATORS[OURS])),
            "ours_all": (OURS, AIRFLOW, "\n".join(f"import {m}" for m in modules)),
            "dag_ours": (OURS, AIRFLOW, write_dag(folder, OURS)),
            "base_google": (GOOGLE, "", AIRFLOW),
            "google_op": (GOOGLE, AIRFLOW, "from {} import {}".format(*OPERATORS[GOOGLE])),
            "dag_google": (GOOGLE, AIRFLOW, write_dag(folder, GOOGLE)),
        }
        m = measure(cases, reps)

    def loaded(key: str) -> str:
        return " / ".join(f"{m[key][prefix]:.0f}" for prefix in ("google.cloud", "aiohttp", "pandas"))

    def row(label: str, key: str) -> list:
        r = m[key]
        return [label, f"{r['wall']:.2f}", f"{r['cpu']:.2f}", f"{round(r['added_rss'])}", f"{r['peak_rss']:.0f}",
                loaded(key), f"{r['modules']:.0f}"]

    headers = ["timed statement", "wall s", "CPU s", "RSS added MB", "peak RSS MB",
               "google.cloud* / aiohttp* / pandas* modules", "modules"]
    table = md_table(headers, [
        row("baseline, .venv: `import airflow.sdk` (in a bare interpreter)", "base_ours"),
        row("ours: `from airflow_bqjobs.operators import BigQuerySubmitJobOperator`", "ours_op"),
        row(f"ours: import all {len(modules)} operator/sensor/trigger modules", "ours_all"),
        row("ours: parse a DAG file of 5 x BigQuerySubmitJobOperator", "dag_ours"),
        row("baseline, .bench-venv: `import airflow.sdk` (in a bare interpreter)", "base_google"),
        row("Google: `from airflow.providers.google.cloud.operators.bigquery import BigQueryInsertJobOperator`",
            "google_op"),
        row("Google: parse a DAG file of 5 x BigQueryInsertJobOperator", "dag_google"),
    ])

    def cost(key: str, field: str, unit: str, digits: int = 2) -> str:
        return f"{round(m[key][field], digits) + 0:.{digits}f} {unit}"  # + 0: no "-0"

    return Report(
        title="Import cost (DAG parsing)",
        what=f"Median of {reps} fresh interpreters per row. Except for the baselines, `airflow.sdk` is imported "
             "first, untimed: figures are what the statement adds to a DAG file that imports Airflow anyway.",
        tables=[table],
        notes=[f"our modules: {', '.join(modules)}",
               "CPU is the steadier figure when the machine is shared (the summary quotes it); wall also counts "
               "waiting for the CPU and the disk.",
               "The 1 google.cloud module of the .bench-venv baseline is the namespace package that the "
               "google-cloud-* distributions' `.pth` files load at interpreter start."],
        summary=[
            ("Operator import on top of Airflow: CPU / RSS",
             f"{cost('ours_op', 'cpu', 's')} / {cost('ours_op', 'added_rss', 'MB', 0)}",
             f"{cost('google_op', 'cpu', 's')} / {cost('google_op', 'added_rss', 'MB', 0)}"),
            ("Modules loaded by the operator import: google.cloud* / aiohttp* / pandas*",
             loaded("ours_op"), loaded("google_op")),
            ("Parse of a DAG file of 5 such tasks on top of Airflow: CPU",
             cost("dag_ours", "cpu", "s"), cost("dag_google", "cpu", "s")),
        ],
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=REPS)
    print(run(parser.parse_args().reps).markdown())
