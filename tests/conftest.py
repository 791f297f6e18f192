"""Session setup shared by every test.

Airflow reads its configuration when it is first imported, so the environment below is set at the
top of this file, before any test module (or plugin listed here) can import ``airflow``: a throwaway
AIRFLOW_HOME with its own SQLite metadata DB, no example DAGs, this repo's ``example_dags/`` as the
DAGs folder, and Airflow's unit-test mode off (it swaps in Airflow's own test config).

The metadata DB is created once per session by the ``airflow_db`` fixture, in process with
``airflow.utils.db.initdb()``, which is what ``airflow db migrate`` runs on an empty database
(create the tables from the ORM, stamp the Alembic head, add the default pool). That takes ~1.7 s
here; the ``airflow db migrate`` subprocess takes ~7 s because it imports Airflow a second time.
It is set up automatically whenever a collected test module imported Airflow; otherwise request it.
"""

pytest_plugins = ["tests.fakebq.pytest_plugin"]

# ruff: noqa: E402
# (pytest_plugins stays first, as agreed; the imports follow it)

import atexit
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
AIRFLOW_HOME = tempfile.mkdtemp(prefix="bqjobs-tests-airflow-home-")
atexit.register(shutil.rmtree, AIRFLOW_HOME, ignore_errors=True)

if "airflow" in sys.modules:  # pragma: no cover - only when a plugin imported Airflow before us
    warnings.warn(
        "airflow was imported before tests/conftest.py could set AIRFLOW_HOME; "
        "tests may use the wrong Airflow configuration",
        stacklevel=1,
    )

# A developer's shell settings must not point the tests at a real deployment.
for _var in ("AIRFLOW_CONFIG", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__EXECUTOR"):
    os.environ.pop(_var, None)
os.environ.update(
    {
        "AIRFLOW_HOME": AIRFLOW_HOME,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "example_dags"),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }
)


@pytest.fixture(autouse=True)
def _fresh_shared_clients():
    """Each test starts like a fresh triggerer process: no shared clients, credentials or connections
    (tests change connections and endpoints between them)."""
    from airflow_bqjobs.hooks import shared

    shared.reset()
    yield
    shared.reset()


@pytest.fixture(autouse=True)
def _fresh_secrets_masker_on_airflow_2():
    """Airflow 2.11's secrets masker is process-wide and keeps every secret a test's task registered
    (a connection password such as "airflow"), then masks it in later tests' log lines; a task
    process starts with an empty one. (3.x masks per task process through the Task SDK.)"""
    yield
    if "airflow" not in sys.modules:
        return
    from airflow import __version__

    if int(__version__.split(".")[0]) < 3:
        from airflow.utils.log.secrets_masker import _secrets_masker

        masker = _secrets_masker()
        masker.patterns, masker.replacer = set(), None


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """Create the session's Airflow metadata DB (once); returns AIRFLOW_HOME."""
    from airflow.utils import db

    import tests.compat  # noqa: F401  (3.0-3.2: one in-process execution API per process, as 3.3 has)

    db.initdb()
    return AIRFLOW_HOME


@pytest.fixture(scope="session", autouse=True)
def _airflow_db_if_airflow_imported(request: pytest.FixtureRequest) -> None:
    """Set up ``airflow_db`` for the session when a collected test module imported Airflow.

    Sessions of pure unit tests (no Airflow import at collection) skip the ~5 s of importing
    Airflow and creating its DB; a test that imports Airflow only inside its body and needs the
    metadata DB requests ``airflow_db`` itself.
    """
    if "airflow" in sys.modules:
        request.getfixturevalue("airflow_db")


@pytest.fixture
def register_dag(airflow_db):
    """``register_dag(dag)`` writes a DAG built inside a test to the metadata DB.

    Airflow 3.3's ``dag.test()`` refuses a DAG that is not serialized ("the dag is not serialized");
    DAG files in example_dags/ are found through the dags-folder bundle and need nothing. Note that
    ``dag.test()`` names the run after ``run_after`` (default: now): run it with
    ``tests.compat.run_dag(dag, date)`` to run the same run ID twice, on every Airflow version.
    """
    from tests.compat import register_dag

    return register_dag


@pytest.fixture
def hook(fake_bq, monkeypatch):
    """A hook on a connection that does not exist, so on its defaults: the fake, project test-project
    (``_fresh_shared_clients`` gives it no shared client of an earlier test)."""
    from airflow_bqjobs.hooks.jobs import BigQueryJobsHook

    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", fake_bq.url)
    return BigQueryJobsHook("no_such_conn", project_id="test-project")


@pytest.fixture
def emulator(fake_bq, monkeypatch):
    """The fake BigQuery server, reached by every hook built without a connection, retrying fast."""
    from tests.emulator import use_fake

    use_fake(monkeypatch, fake_bq.url)
    return fake_bq


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Figures a test reported with ``report_figures`` (tests/reliability/conftest.py), one section each;
    read from the test reports, so they show under pytest-xdist too (this file is loaded there)."""
    for reports in list(terminalreporter.stats.values()):
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            for name, value in getattr(report, "user_properties", ()):
                if name == "bqjobs_figures":
                    title, lines = value
                    terminalreporter.section(title)
                    for line in lines:
                        terminalreporter.write_line(line)
