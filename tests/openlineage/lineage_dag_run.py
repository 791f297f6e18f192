"""Run the lineage DAG with ``dag.test()`` in a fresh interpreter:
``python -m tests.openlineage.lineage_dag_run MODE RESULT_JSON``.

A fresh interpreter because Airflow's OpenLineage provider decides once per process (cached config,
plugin registration) whether it is enabled. MODE ``lineage``: the provider installed and enabled
(the environment names its file transport). MODE ``blocked``: ``openlineage`` and
``airflow.providers.openlineage`` cannot be imported, as if the provider were not installed; every
attempt to import them from our package is recorded. Writes RESULT_JSON: the task states of each
run, the attempts, and which OpenLineage modules (ours or the provider's) were loaded.

The environment (set by tests/test_openlineage.py) gives AIRFLOW_HOME with a migrated DB and the
connection ``bqjobs_lineage`` pointing at the fake.
"""

from __future__ import annotations

import importlib.abc
import json
import os
import sys
import tempfile
import traceback

BLOCKED = ("openlineage", "airflow.providers.openlineage")
ATTEMPTS: list[str] = []


class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == BLOCKED[0] or name.startswith(BLOCKED[0] + ".") or name == BLOCKED[1] or name.startswith(BLOCKED[1] + "."):
            ours = [f.filename for f in traceback.extract_stack() if f"{os.sep}airflow_bqjobs{os.sep}" in f.filename]
            if ours:
                ATTEMPTS.append(f"{name} from {ours[-1]}")
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None


def _hide_distributions() -> None:
    """Airflow finds providers through installed distributions' entry points: hide OpenLineage's."""
    import importlib.metadata

    import importlib_metadata

    for module in (importlib.metadata, importlib_metadata):
        real = module.distributions

        def distributions(*args, _real=real, **kwargs):
            return (d for d in _real(*args, **kwargs)
                    if not (d.metadata["Name"] or "").lower().replace("_", "-").startswith(
                        ("apache-airflow-providers-openlineage", "openlineage-")))

        module.distributions = distributions


def main(mode: str, result_path: str) -> None:
    if mode == "blocked":  # as if apache-airflow-providers-openlineage were not installed
        _hide_distributions()
        sys.meta_path.insert(0, _NotInstalled())
    from tests.compat import register_dag, run_dag
    from tests.openlineage.lineage_dag import LOGICAL_DATE, build_dag, upload_file

    upload_file(tempfile.mkdtemp(prefix="bqjobs-lineage-"))
    dag = register_dag(build_dag())
    runs = []
    for _ in range(2):  # the same DAG run twice: the second finds every job already succeeded
        run = run_dag(dag, LOGICAL_DATE)
        runs.append({ti.task_id: str(ti.state) for ti in run.get_task_instances()})
    loaded = sorted(m for m in sys.modules if m.startswith(("airflow_bqjobs.openlineage", "openlineage"))
                    or m.startswith("airflow.providers.openlineage"))
    with open(result_path, "w") as handle:
        json.dump({"runs": runs, "attempts": ATTEMPTS, "loaded": loaded}, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
