"""Drive a fake in another process: an HTTP handle with the same methods as
FakeBigQuery, and a launcher for ``python -m tests.fakebq``.

Deployment tests run a real Airflow scheduler and triggerer against the
fake, so the fake must outlive any one test process's threads.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

from .inspection import InspectionHelpers
from .server import fault_spec, rule_spec

REPO_ROOT = Path(__file__).resolve().parents[2]
URL_PREFIX = "FAKEBQ_URL="


class RemoteError(RuntimeError):
    pass


def _call(url: str, method: str, path: str, body: dict | None = None, raw: bool = False, timeout: float = 10):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            payload = resp.read()
    except urllib.error.HTTPError as exc:
        raise RemoteError(f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')}") from None
    return payload if raw else json.loads(payload or b"{}")


class RemoteClock:
    """The Clock API, applied to a remote fake."""

    def __init__(self, url: str):
        self._url = url

    def _set(self, **spec) -> dict:
        return _call(self._url, "POST", "/_fake/clock", spec)

    def now(self) -> float:
        return _call(self._url, "GET", "/_fake/clock")["now"]

    @property
    def frozen(self) -> bool:
        return _call(self._url, "GET", "/_fake/clock")["frozen"]

    def freeze(self, at: float | None = None) -> float:
        return self._set(freeze=True, **({} if at is None else {"at": at}))["now"]

    def unfreeze(self) -> float:
        return self._set(freeze=False)["now"]

    def advance(self, seconds: float) -> float:
        return self._set(advance=seconds)["now"]

    def set_scale(self, scale: float) -> None:
        self._set(scale=scale)


class RemoteFakeBigQuery(InspectionHelpers):
    """Control handle for a fake reachable at ``url`` (same API as FakeBigQuery)."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.clock = RemoteClock(self.url)

    def _call(self, method: str, path: str, body: dict | None = None, raw: bool = False):
        return _call(self.url, method, path, body, raw)

    def health(self) -> dict:
        return self._call("GET", "/_fake/health")

    def reset(self) -> None:
        self._call("POST", "/_fake/reset")

    def add_rule(self, job_id=None, job_type=None, *, times=None, labels=None, query=None,
                 behaviour=None, **fields) -> int:
        spec = rule_spec(job_id, job_type, times=times, labels=labels, query=query, behaviour=behaviour, **fields)
        return self._call("POST", "/_fake/rules", spec)["id"]

    def remove_rule(self, rule_id: int) -> bool:
        return self._call("DELETE", f"/_fake/rules/{rule_id}")["removed"]

    def clear_rules(self) -> None:
        self._call("DELETE", "/_fake/rules")

    @property
    def rules(self) -> list[dict]:
        return self._call("GET", "/_fake/rules")["rules"]

    def set_defaults(self, **fields) -> dict:
        return self._call("POST", "/_fake/defaults", fields)

    def inject(self, kind, endpoint="any", *, count=None, rate=None, delay_s=None, job_id=None) -> int:
        spec = fault_spec(kind, endpoint, count=count, rate=rate, delay_s=delay_s, job_id=job_id)
        return self._call("POST", "/_fake/faults", spec)["id"]

    def remove_fault(self, fault_id: int) -> bool:
        return self._call("DELETE", f"/_fake/faults/{fault_id}")["removed"]

    def clear_faults(self) -> None:
        self._call("DELETE", "/_fake/faults")

    @property
    def faults(self) -> list[dict]:
        return self._call("GET", "/_fake/faults")["faults"]

    def set_seed(self, seed: int) -> None:
        self._call("POST", "/_fake/config", {"seed": seed})

    def set_user_email(self, email: str) -> None:
        self._call("POST", "/_fake/config", {"user_email": email})

    def set_location_rule(self, on: bool) -> None:
        self._call("POST", "/_fake/config", {"location_rule": bool(on)})

    @property
    def jobs(self) -> list[dict]:
        return self._call("GET", "/_fake/jobs")["jobs"]

    @property
    def calls(self) -> list[dict]:
        return self._call("GET", "/_fake/calls")["calls"]

    @property
    def call_counts(self) -> dict[str, int]:
        return self._call("GET", "/_fake/calls")["counts"]

    @property
    def fault_counts(self) -> dict[str, int]:
        return self._call("GET", "/_fake/calls")["faults"]

    def uploaded_bytes(self, job_id: str, project: str | None = None) -> bytes | None:
        try:
            return self._call("GET", f"/_fake/uploads/{project or '-'}/{job_id}", raw=True)
        except RemoteError:
            return None


class FakeBigQueryProcess(RemoteFakeBigQuery):
    """``python -m tests.fakebq`` as a child process, controlled over HTTP.

    >>> with FakeBigQueryProcess.start() as fake:
    ...     env["BIGQUERY_EMULATOR_HOST"] = fake.url
    """

    def __init__(self, proc: subprocess.Popen, url: str):
        super().__init__(url)
        self.proc = proc

    @classmethod
    def start(cls, *, host: str = "127.0.0.1", port: int = 0, seed: int = 0, freeze: bool = False,
              extra_args: list[str] | None = None, env: dict | None = None,
              python: str = sys.executable, startup_timeout: float = 20.0) -> "FakeBigQueryProcess":
        cmd = [python, "-m", "tests.fakebq", "--host", host, "--port", str(port), "--seed", str(seed)]
        if freeze:
            cmd.append("--freeze")
        cmd += extra_args or []
        child_env = {**os.environ, **(env or {})}
        child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), child_env.get("PYTHONPATH")]))
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=child_env, stdout=subprocess.PIPE, text=True)
        url = _read_url_line(proc, startup_timeout)
        fake = cls(proc, url)
        atexit.register(fake.stop)  # never leave an orphan server behind
        return fake

    def stop(self, timeout: float = 5.0) -> int | None:
        """Terminate (SIGTERM, then SIGKILL) and return the exit code."""
        atexit.unregister(self.stop)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.proc.returncode

    def __enter__(self) -> "FakeBigQueryProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _read_url_line(proc: subprocess.Popen, timeout: float) -> str:
    found: list[str] = []

    def reader():
        for line in proc.stdout:
            if line.startswith(URL_PREFIX):
                found.append(line[len(URL_PREFIX):].strip())
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout)
    if not found:
        proc.kill()
        proc.wait(5)
        raise RemoteError(f"fakebq did not print its URL within {timeout}s (exit code {proc.returncode})")
    return found[0]
