"""A throwaway PostgreSQL server for the real-deployment test: Debian's binaries, our own cluster.

``PostgresServer.start()`` finds the server binaries (``/usr/lib/postgresql/<version>/bin``), installing
Debian's ``postgresql`` package with apt-get when they are missing and we are root (a fresh CI machine),
runs ``initdb`` into a new temp directory and starts the postmaster with ``pg_ctl`` on a free port,
listening on 127.0.0.1 only, with its socket in that directory. It never touches the package's own
cluster. As root, every server command runs as the ``postgres`` user (PostgreSQL refuses root).

``stop()`` is a fast shutdown (``pg_ctl stop -m fast``), then SIGKILL of the postmaster by the PID in
``postmaster.pid`` if that did not work, then the directory is removed. It is safe to call twice and is
registered with atexit, so an interrupted session does not leave a server behind.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DB_USER = "airflow"
DB_NAME = "airflow"
SERVER_USER = "postgres"  # created by Debian's postgresql-common
APT_TIMEOUT_S = 600


class PostgresError(RuntimeError):
    pass


def _log(msg: str) -> None:
    print(f"[deployment:postgres] {msg}", flush=True)


def _is_root() -> bool:
    return os.geteuid() == 0


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has initdb, pg_ctl and postgres."""

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.parent.name)
        except ValueError:
            return 0.0

    for pg_ctl in sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=version, reverse=True):
        bindir = Path(pg_ctl).parent
        if all((bindir / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            return bindir
    on_path = shutil.which("pg_ctl")
    if on_path:
        bindir = Path(on_path).resolve().parent
        if (bindir / "initdb").exists() and (bindir / "postgres").exists():
            return bindir
    return None


def ensure_installed() -> Path:
    """The server's bindir, installing Debian's ``postgresql`` (root only) when it is missing."""
    bindir = find_bindir()
    if bindir is not None:
        return bindir
    if not _is_root() or not shutil.which("apt-get"):
        raise PostgresError(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin) and cannot install them "
            "(needs root and apt-get): run `apt-get update && apt-get install -y postgresql`"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    started = time.monotonic()
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]):
        _log("running " + " ".join(cmd))
        result = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=APT_TIMEOUT_S)
        if result.returncode != 0:
            raise PostgresError(f"{' '.join(cmd)} failed ({result.returncode}):\n{_tail(result.stdout + result.stderr)}")
    bindir = find_bindir()
    if bindir is None:
        raise PostgresError("apt-get installed postgresql but no /usr/lib/postgresql/*/bin/pg_ctl appeared")
    _log(f"installed PostgreSQL ({bindir}) in {time.monotonic() - started:.1f} s")
    return bindir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class PostgresServer:
    bindir: Path
    base: Path  # owns data/, sock/ and postgres.log
    port: int
    _stopped: bool = field(default=False, repr=False)

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def sockdir(self) -> Path:
        return self.base / "sock"

    @property
    def logfile(self) -> Path:
        return self.base / "postgres.log"

    def url(self, driver: str = "psycopg2", database: str = DB_NAME) -> str:
        """SQLAlchemy URL over TCP to 127.0.0.1 (trust auth: a throwaway cluster on loopback only)."""
        return f"postgresql+{driver}://{DB_USER}@127.0.0.1:{self.port}/{database}"

    # -- lifecycle --------------------------------------------------------------------------------

    @classmethod
    def start(cls, *, timeout: float = 60.0) -> "PostgresServer":
        bindir = ensure_installed()
        base = Path(tempfile.mkdtemp(prefix="bqjobs-pg-"))
        os.chmod(base, 0o700)
        (base / "sock").mkdir()
        if _is_root():
            shutil.chown(base, SERVER_USER, SERVER_USER)
            shutil.chown(base / "sock", SERVER_USER, SERVER_USER)
        server = cls(bindir, base, free_port())
        atexit.register(server.stop)
        try:
            server._run("initdb", "-D", str(server.datadir), "-U", DB_USER, "--auth=trust", "-E", "UTF8",
                        "--no-sync", timeout=timeout)
            options = (f"-p {server.port} -k {server.sockdir} -c listen_addresses=127.0.0.1 "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            server._run("pg_ctl", "-D", str(server.datadir), "-l", str(server.logfile), "-w", "-t", str(int(timeout)),
                        "-o", options, "start", timeout=timeout + 10)
            server._create_database(timeout)
        except BaseException:
            log = server.log_tail()
            server.stop()
            if log:
                _log("postgres.log:\n" + log)
            raise
        return server

    def _run(self, tool: str, *args: str, timeout: float) -> str:
        cmd = [str(self.bindir / tool), *args]
        if _is_root():
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        try:
            result = subprocess.run(cmd, cwd=self.base, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                    timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise PostgresError(f"{tool} did not finish within {timeout:.0f} s") from exc
        if result.returncode != 0:
            raise PostgresError(f"{tool} failed ({result.returncode}):\n{_tail(result.stdout + result.stderr)}")
        return result.stdout

    def _create_database(self, timeout: float) -> None:
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=DB_USER, dbname="postgres",
                                        connect_timeout=5)
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {DB_NAME}")
        finally:
            conn.close()

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Read-only look into the metadata DB (for diagnostics and assertions Airflow's API lacks)."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=DB_USER, dbname=DB_NAME, connect_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            conn.close()

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return _tail(self.logfile.read_text(errors="replace"), lines)
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        pid = self.postmaster_pid()
        if pid is not None:
            try:
                self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "-t", str(int(timeout)), "stop",
                          timeout=timeout + 10)
            except PostgresError as exc:
                _log(f"pg_ctl stop failed ({exc}); killing postmaster {pid}")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                _wait_gone(pid, 10)
        shutil.rmtree(self.base, ignore_errors=True)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False
