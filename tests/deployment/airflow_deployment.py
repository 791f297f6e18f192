"""A real Airflow 3 deployment for tests: separate scheduler, dag-processor, api-server and triggerer.

All of them run from this venv's ``airflow`` command against one PostgreSQL metadata DB, with a
throwaway AIRFLOW_HOME, LocalExecutor (parallelism 4), this folder's ``dags/`` as DAGs folder, and
every listener on 127.0.0.1 (log-serving sub-servers are switched off). The environment is built from
scratch for the components: no AIRFLOW_* variable of the test process (tests/conftest.py sets some)
leaks into them.

Each component is its own process group, its stdout+stderr go to ``<home>/component-logs/<name>.log``.
:meth:`Component.stop` sends SIGTERM to the component and gives it time to stop its own children, then
SIGTERM and SIGKILL, by PID, to whatever is left of its tree or process group (LocalExecutor workers,
task supervisors and the triggerer's runner subprocess can outlive it or hang).
:meth:`Component.kill` is the crash: SIGKILL to all of them at once. On Linux every component also
gets SIGTERM if the test process dies (PR_SET_PDEATHSIG), and ``stop_all`` is registered with atexit.

The REST API (``/api/v2``) needs no token: ``[core] simple_auth_manager_all_admins`` makes every
caller an admin; :meth:`AirflowDeployment.wait_healthy` checks that an unauthenticated call is
accepted.
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil

from tests.deployment.postgres import free_port

HERE = Path(__file__).resolve().parent
DAGS_FOLDER = HERE / "dags"
REPO_ROOT = HERE.parent.parent
COMPONENT_ORDER = ("api-server", "scheduler", "dag-processor", "triggerer")


class DeploymentError(AssertionError):
    """A wait timed out or a component misbehaved; the message carries the diagnostics."""


def _log(msg: str) -> None:
    print(f"[deployment] {msg}", flush=True)


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def tail(path: Path, lines: int = 60, *, skip: str | None = None) -> str:
    """The last ``lines`` lines of a file, leaving out lines that contain ``skip``."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    kept = [line for line in text.splitlines() if skip is None or skip not in line]
    return "\n".join(kept[-lines:])


def _tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (a snapshot; the root first)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _group_members(pgid: int) -> list[psutil.Process]:
    """Processes in process group ``pgid`` (each component leads its own: start_new_session)."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                members.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return members


def _signal_all(procs: list[psutil.Process], sig: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


@dataclass
class Component:
    """One Airflow component process (``airflow <args>``), started by :meth:`AirflowDeployment.start`."""

    name: str
    proc: subprocess.Popen
    log_path: Path
    started_at: float = field(default_factory=time.time)
    paused: list[int] = field(default_factory=list)  # PIDs SIGSTOPped by pause()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tree(self) -> list[psutil.Process]:
        return _tree(self.pid) if self.alive() else []

    def stop(self, grace: float = 20.0) -> list[int]:
        """SIGTERM the component and let it shut down its own children for up to ``grace`` seconds; then
        SIGTERM, and 5 s later SIGKILL, whatever is left of it (descendants and its process group), by
        PID. Returns the PIDs that needed SIGKILL."""
        procs = self.tree()
        if not procs:
            self.proc.poll()
            return []
        _signal_all(procs[:1], signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            _log(f"{self.name}: pid {self.pid} still running {grace:.0f} s after SIGTERM")
        leftover = self._leftover(procs)
        if leftover:
            _signal_all(leftover, signal.SIGTERM)
            _, leftover = psutil.wait_procs(leftover, timeout=5)
        killed = []
        if leftover:
            killed = sorted(p.pid for p in leftover)
            _log(f"{self.name}: SIGKILL to {killed} (still running after SIGTERM)")
            _signal_all(leftover, signal.SIGKILL)
            psutil.wait_procs(leftover, timeout=10)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        return killed

    def _leftover(self, snapshot: list[psutil.Process]) -> list[psutil.Process]:
        """Live processes of this component: from the snapshot, its current tree, its process group."""
        found = {p.pid: p for p in [*snapshot, *self.tree(), *_group_members(self.pid)]}
        return [p for p in found.values() if _running(p)]

    def pause(self) -> list[int]:
        """SIGSTOP the component and all its descendants (a stalled process); returns their PIDs."""
        procs = self._leftover(self.tree())
        _signal_all(procs, signal.SIGSTOP)
        self.paused = [p.pid for p in procs]
        return self.paused

    def resume(self) -> list[int]:
        """SIGCONT to every process :meth:`pause` stopped (and the current tree)."""
        procs = {p.pid: p for p in self._leftover(self.tree())}
        for pid in self.paused:
            try:
                procs.setdefault(pid, psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
        _signal_all(list(procs.values()), signal.SIGCONT)
        self.paused = []
        return sorted(procs)

    def kill(self) -> list[int]:
        """Crash: SIGKILL the component and all its descendants at once; returns the PIDs killed."""
        procs = self._leftover(self.tree())
        _signal_all(procs, signal.SIGKILL)
        gone, alive = psutil.wait_procs(procs, timeout=10)
        if alive:
            raise DeploymentError(f"{self.name}: processes {[p.pid for p in alive]} survived SIGKILL")
        self.proc.wait(10)
        return [p.pid for p in procs]


class AirflowDeployment:
    """Build the environment, migrate the DB, start/stop components, talk to the REST API."""

    def __init__(self, home: Path, sql_alchemy_conn: str, *, extra_env: dict[str, str] | None = None,
                 bin_dir: Path | None = None):
        self.home = home
        self.bin_dir = bin_dir or Path(sys.executable).parent
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.log_dir = home / "component-logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.components: dict[str, Component] = {}
        self.retired: list[Component] = []  # stopped or killed ones, kept for their logs
        self.stop_report: list[tuple[str, float, int | None, list[int]]] = []  # name, seconds, exit code, SIGKILLed
        self.env = self._build_env(sql_alchemy_conn, extra_env or {})
        atexit.register(self.stop_all)

    def _build_env(self, sql_alchemy_conn: str, extra_env: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))}
        env.pop("BIGQUERY_EMULATOR_HOST", None)  # the connection names the fake
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
                "PYTHONUNBUFFERED": "1",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn,
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",  # the test unpauses through the API
                "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                # A killed triggerer's triggers go to a live one once its heartbeat is this old.
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            }
        )
        env.update(extra_env)
        return env

    # -- processes --------------------------------------------------------------------------------

    def run_cli(self, *args: str, timeout: float) -> str:
        """``airflow <args>`` to completion; raises with its output on failure or timeout."""
        started = time.monotonic()
        try:
            result = subprocess.run([str(self.bin_dir / "airflow"), *args], env=self.env, cwd=self.home,
                                    stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            raise DeploymentError(f"airflow {' '.join(args)} did not finish within {timeout:.0f} s:\n{out[-4000:]}") from None
        if result.returncode != 0:
            raise DeploymentError(
                f"airflow {' '.join(args)} failed ({result.returncode}) after {time.monotonic() - started:.1f} s:\n"
                f"{(result.stdout + result.stderr)[-6000:]}"
            )
        return result.stdout

    def start(self, name: str) -> Component:
        """Start one component (a name from COMPONENT_ORDER); a second triggerer gets a new log file.

        ``<role>-<n>`` names a further instance of a role (``triggerer-2``), and ``celery-worker-<n>``
        a Celery worker (CeleryExecutor profile) with hostname ``<name>@127.0.0.1`` and
        ``[celery] worker_concurrency``."""
        role = name
        if name not in COMPONENT_ORDER and "-" in name and name.rsplit("-", 1)[1].isdigit():
            role = name.rsplit("-", 1)[0]
        args = {
            "api-server": ["api-server", "--host", "127.0.0.1", "--port", str(self.api_port), "--workers", "1"],
            "scheduler": ["scheduler", "--skip-serve-logs"],
            "dag-processor": ["dag-processor"],
            "triggerer": ["triggerer", "--skip-serve-logs"],
            "celery-worker": ["celery", "worker", "--skip-serve-logs", "--without-gossip", "--without-mingle",
                              "--celery-hostname", f"{name}@127.0.0.1",
                              "--concurrency", self.env.get("AIRFLOW__CELERY__WORKER_CONCURRENCY", "2")],
        }[role]
        current = self.components.get(name)
        if current is not None and current.alive():
            raise DeploymentError(f"{name} is already running (pid {current.pid})")
        n = 1 + sum(1 for c in self.retired if c.name == name)
        log_path = self.log_dir / (f"{name}.log" if n == 1 else f"{name}-{n}.log")
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([str(self.bin_dir / "airflow"), *args], env=self.env, cwd=self.home,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=_set_pdeathsig)
        component = Component(name, proc, log_path)
        if current is not None:
            self.retired.append(current)
        self.components[name] = component
        _log(f"started {name} (pid {proc.pid}, log {log_path})")
        return component

    def kill(self, name: str) -> list[int]:
        component = self.components.pop(name)
        pids = component.kill()
        self.retired.append(component)
        _log(f"SIGKILLed {name}: pids {pids}")
        return pids

    def stop_all(self) -> None:
        atexit.unregister(self.stop_all)
        # The scheduler first (no new task processes), the api-server last (workers report to it).
        # Further instances (triggerer-2, celery workers) go after the scheduler, before the api-server.
        others = sorted(set(self.components) - {"scheduler", "triggerer", "dag-processor", "api-server"})
        for name in ("scheduler", *others, "triggerer", "dag-processor", "api-server"):
            component = self.components.pop(name, None)
            if component is not None:
                started = time.monotonic()
                killed = component.stop()
                self.retired.append(component)
                self.stop_report.append((name, round(time.monotonic() - started, 1), component.proc.returncode, killed))
                _log(f"stopped {name} in {time.monotonic() - started:.1f} s (exit code {component.proc.returncode}"
                     + (f"; SIGKILLed {killed})" if killed else ")"))

    def assert_running(self, *names: str) -> None:
        for name in names or tuple(self.components):
            component = self.components.get(name)
            if component is None or not component.alive():
                code = None if component is None else component.proc.returncode
                raise DeploymentError(f"{name} is not running (exit code {code})\n{self.diagnostics()}")

    # -- diagnostics ------------------------------------------------------------------------------

    def diagnostics(self, lines: int = 60) -> str:
        parts = []
        for component in [*self.retired, *self.components.values()]:
            state = "running" if component.alive() else f"exited {component.proc.returncode}"
            # The api-server logs every request (our polling too): those lines would hide the rest.
            parts.append(f"----- {component.log_path.name} (pid {component.pid}, {state}), last {lines} lines"
                         f" without [http.access] -----\n" + tail(component.log_path, lines, skip="[http.access]"))
        return "\n".join(parts)

    def task_log_files(self, dag_id: str) -> dict[str, str]:
        """The task and trigger log files of a DAG's runs (name -> text); the trigger's own lines are in
        ``attempt=N.log.trigger.<triggerer job id>.log``, written by the triggerer that ran it."""
        root = self.home / "logs" / f"dag_id={dag_id}"
        out = {}
        for path in sorted(root.rglob("*.log")) if root.is_dir() else []:
            try:
                out[str(path.relative_to(root))] = path.read_text(errors="replace")
            except OSError as exc:
                out[str(path.relative_to(root))] = f"<cannot read: {exc}>"
        return out

    # -- REST API ---------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, *, timeout: float = 30.0,
            headers: dict[str, str] | None = None, raw: bool = False, expect: tuple[int, ...] = (200,)) -> Any:
        """Call ``/api/v2<path>`` without any token; returns the parsed JSON (or bytes with raw=True)."""
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Accept": "application/json", **(headers or {})}
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        req = urllib.request.Request(f"{self.api_url}/api/v2{path}", data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, payload = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        if status not in expect:
            raise ApiError(method, path, status, payload.decode(errors="replace"))
        if raw:
            return payload
        return json.loads(payload) if payload else None

    def health(self) -> dict:
        return self.api("GET", "/monitor/health", timeout=10)

    def wait_healthy(self, timeout: float) -> float:
        """Until the metadatabase, scheduler, triggerer and dag-processor all report healthy."""
        last: Any = None

        def healthy() -> bool:
            nonlocal last
            self.assert_running(*COMPONENT_ORDER)
            try:
                last = self.health()
            except (OSError, ApiError) as exc:
                last = repr(exc)
                return False
            return all((last.get(part) or {}).get("status") == "healthy"
                       for part in ("metadatabase", "scheduler", "triggerer", "dag_processor"))

        return self.wait_for(healthy, timeout, lambda: f"components healthy (last health: {last})")

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str | Callable[[], str],
                 interval: float = 0.5) -> Any:
        """Poll ``predicate`` until truthy; returns its value. Raises with diagnostics on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                text = what() if callable(what) else what
                raise DeploymentError(f"timed out after {timeout:.0f} s waiting for {text}\n{self.diagnostics()}")
            time.sleep(interval)


class ApiError(AssertionError):
    def __init__(self, method: str, path: str, status: int, body: str):
        super().__init__(f"{method} /api/v2{path}: HTTP {status}: {body[:2000]}")
        self.status = status
        self.body = body


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")
