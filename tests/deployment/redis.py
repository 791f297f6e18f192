"""A throwaway Redis server (the Celery broker) for the CeleryExecutor deployment profile.

``RedisServer.start()`` finds Debian's ``redis-server`` (installing the ``redis-server`` package with
apt-get when it is missing and we are root, as ``postgres.py`` does for PostgreSQL) and starts it in
the foreground as our own child on a free port, bound to 127.0.0.1 only, with no persistence
(``--save ""``, ``--appendonly no``) and its working directory in a new temp directory. It never
touches the package's own service. ``stop()`` sends SIGTERM, then SIGKILL, by PID, and removes the
directory; it is safe to call twice and is registered with atexit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.deployment.postgres import APT_TIMEOUT_S, free_port

PACKAGE = "redis-server"
CANDIDATES = ("/usr/bin/redis-server", "/usr/local/bin/redis-server")


class RedisError(RuntimeError):
    pass


def _log(msg: str) -> None:
    print(f"[deployment:redis] {msg}", flush=True)


def find_server() -> Path | None:
    for path in CANDIDATES:
        if os.access(path, os.X_OK):
            return Path(path)
    found = shutil.which("redis-server")
    return Path(found) if found else None


def ensure_installed() -> Path:
    """The ``redis-server`` binary, installing Debian's package (root only) when it is missing."""
    server = find_server()
    if server is not None:
        return server
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RedisError(f"redis-server not found and cannot install it (needs root and apt-get): "
                         f"run `apt-get update && apt-get install -y {PACKAGE}`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    started = time.monotonic()
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", PACKAGE]):
        _log("running " + " ".join(cmd))
        result = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=APT_TIMEOUT_S)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
            raise RedisError(f"{' '.join(cmd)} failed ({result.returncode}):\n{tail}")
    server = find_server()
    if server is None:
        raise RedisError(f"apt-get installed {PACKAGE} but no redis-server binary appeared")
    _log(f"installed {server} in {time.monotonic() - started:.1f} s")
    return server


@dataclass
class RedisServer:
    proc: subprocess.Popen
    base: Path
    port: int
    _stopped: bool = field(default=False, repr=False)

    @property
    def logfile(self) -> Path:
        return self.base / "redis.log"

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @classmethod
    def start(cls, *, timeout: float = 30.0) -> "RedisServer":
        binary = ensure_installed()
        base = Path(tempfile.mkdtemp(prefix="bqjobs-redis-"))
        port = free_port()
        cmd = [str(binary), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(base), "--save", "",
               "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no", "--logfile", str(base / "redis.log")]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                start_new_session=True)
        server = cls(proc, base, port)
        atexit.register(server.stop)
        try:
            server._wait_ready(timeout)
        except BaseException:
            _log("redis.log:\n" + server.log_tail())
            server.stop()
            raise
        return server

    def ping(self) -> bool:
        """A raw RESP PING (no client library needed)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.proc.poll() is not None:
                raise RedisError(f"redis-server exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise RedisError(f"redis-server did not answer PING within {timeout:.0f} s")
            time.sleep(0.1)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _log(f"redis-server pid {self.proc.pid} ignored SIGTERM; SIGKILL")
                self.proc.kill()
                self.proc.wait(timeout)
        shutil.rmtree(self.base, ignore_errors=True)
