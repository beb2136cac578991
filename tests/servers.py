"""Throwaway PostgreSQL and Redis servers on free loopback ports.

Used by the test session (``tests/services_plugin.py``) and by benchmark scripts::

    from tests.servers import start_postgres, start_redis

    with start_postgres(fsync=True) as pg, start_redis() as redis:
        os.environ["DATABASE_URL"] = pg.url
        os.environ["REDIS_URL"] = redis.url

Each server runs as a child of the calling process, in a temporary directory
that :meth:`stop` removes. The child runs in its own session (a Ctrl-C in the
terminal does not reach it, so the caller can still tear down cleanly) and is
asked by the kernel to stop when the thread that started it dies, so even a
``kill -9`` of the caller leaves no server running. Start servers from the main
thread, or from a thread that outlives them.

Running as root, PostgreSQL is run as an unprivileged user (``postgres`` if it
exists, else a ``durable-test`` system user created on first use).

``python -m tests.servers`` starts both and prints their URLs until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

POSTGRES_PACKAGE_HINT = (
    "install the PostgreSQL server: apt-get install postgresql "
    "(Debian 12's postgresql-15 package provides /usr/lib/postgresql/15/bin), "
    "or point PG_BINDIR at a directory holding initdb and postgres"
)
REDIS_PACKAGE_HINT = "install Redis: apt-get install redis-server"
MIN_POSTGRES_MAJOR = 15
FALLBACK_SERVICE_USER = "durable-test"
START_ATTEMPTS = 3  # a free port can be taken between choosing it and binding it


class ServiceError(RuntimeError):
    """A throwaway server could not be found or started."""


# --- helpers ----------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent(sig: int) -> Callable[[], None] | None:
    """A preexec_fn asking Linux to send ``sig`` to the child when its parent dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):  # not Linux
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(sig), 0, 0, 0)

    return preexec


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _wait(check: Callable[[], bool], proc: subprocess.Popen, timeout: float, what: str, log: Path) -> None:
    """Poll ``check`` until true; fail early if ``proc`` exits, or at the deadline."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        if check():
            return
        if proc.poll() is not None:
            raise _Exited(f"{what} exited with code {proc.returncode}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} not ready after {timeout:g}s:\n{_tail(log)}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


class _Exited(ServiceError):
    pass


def _port_taken(message: str) -> bool:
    return bool(re.search(r"address already in use|could not bind", message, re.IGNORECASE))


def _stop_process(proc: subprocess.Popen | None, sig: int, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _base_temp_dir(want_other_user: bool) -> str:
    """The temp root; ``/tmp`` when another user must reach it and $TMPDIR is private."""
    base = tempfile.gettempdir()
    if not want_other_user:
        return base
    path = Path(base).resolve()
    for part in (path, *path.parents):
        if not part.stat().st_mode & 0o001:  # others may not traverse it
            return "/tmp"
    return base


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def make_temp_dir(prefix: str, base_dir: str) -> Path:
    """A fresh temp dir tagged with our pid, after sweeping dirs whose creator died.

    The servers die with their creator, but a creator killed with SIGKILL cannot
    remove their directories; the next run does.
    """
    for stale in glob.glob(os.path.join(base_dir, f"{prefix}*")):
        try:
            owner = int(Path(stale, "creator.pid").read_text())
        except (OSError, ValueError):
            continue
        if owner != os.getpid() and not _pid_alive(owner):
            shutil.rmtree(stale, ignore_errors=True)
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=base_dir))
    (directory / "creator.pid").write_text(str(os.getpid()))
    return directory


@dataclass(frozen=True)
class _RunAs:
    name: str
    uid: int
    gid: int

    def popen_kwargs(self) -> dict:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def _service_user() -> _RunAs | None:
    """Who runs PostgreSQL: None (ourselves) unless we are root, which it refuses."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_SERVICE_USER):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return _RunAs(name, entry.pw_uid, entry.pw_gid)
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    result = subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            FALLBACK_SERVICE_USER,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode not in (0, 9):  # 9: it appeared meanwhile
        raise ServiceError(
            f"PostgreSQL refuses to run as root and no 'postgres' user exists; "
            f"creating {FALLBACK_SERVICE_USER!r} failed: {result.stderr.strip()}"
        )
    entry = pwd.getpwnam(FALLBACK_SERVICE_USER)
    return _RunAs(FALLBACK_SERVICE_USER, entry.pw_uid, entry.pw_gid)


def _chown_tree(path: Path, run_as: _RunAs | None) -> None:
    if run_as is None:
        return
    os.chown(path, run_as.uid, run_as.gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), run_as.uid, run_as.gid)


# --- PostgreSQL ----------------------------------------------------------------


def _postgres_major(bindir: Path) -> int:
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=False
    ).stdout
    match = re.search(r"\)\s*(\d+)", out)
    return int(match.group(1)) if match else 0


def find_postgres_bindir(min_major: int = MIN_POSTGRES_MAJOR) -> Path:
    """Where initdb and postgres live: $PG_BINDIR, Debian's newest, or $PATH."""
    candidates: list[Path] = []
    if env_dir := os.environ.get("PG_BINDIR"):
        candidates.append(Path(env_dir))
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
        reverse=True,
    )
    candidates += [Path(p) for p in debian]
    if on_path := shutil.which("postgres"):
        candidates.append(Path(on_path).resolve().parent)
    too_old = []
    for bindir in candidates:
        if (bindir / "postgres").is_file() and (bindir / "initdb").is_file():
            major = _postgres_major(bindir)
            if major >= min_major:
                return bindir
            too_old.append(f"{bindir} ({major or 'unknown version'})")
    if too_old:
        raise ServiceError(
            f"PostgreSQL {min_major}+ needed, found only {', '.join(too_old)}; " + POSTGRES_PACKAGE_HINT
        )
    raise ServiceError(f"PostgreSQL server binaries (initdb, postgres) not found; {POSTGRES_PACKAGE_HINT}")


@dataclass
class PostgresServer:
    """A running throwaway PostgreSQL; ``url`` names its database, ``stop()`` removes it."""

    host: str
    port: int
    user: str
    dbname: str
    directory: Path
    version: str
    proc: subprocess.Popen | None = field(repr=False, default=None)

    @property
    def url(self) -> str:
        return self.url_for(self.dbname)

    def url_for(self, dbname: str) -> str:
        return f"postgres://{self.user}@{self.host}:{self.port}/{dbname}"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def socket_dir(self) -> Path:
        return self.directory / "sock"

    @property
    def log_path(self) -> Path:
        return self.directory / "postgres.log"

    def log_tail(self, lines: int = 30) -> str:
        return _tail(self.log_path, lines)

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT: sessions are ended), then remove the directory."""
        _stop_process(self.proc, signal.SIGINT, timeout)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _pg_conf_value(value: object) -> str:
    if isinstance(value, bool):
        value = "on" if value else "off"
    return "'" + str(value).replace("'", "''") + "'"


def start_postgres(
    *,
    fsync: bool = True,
    settings: Mapping[str, object] | None = None,
    dbname: str = "postgres",
    base_dir: str | None = None,
    timeout: float = 60.0,
) -> PostgresServer:
    """initdb into a temp dir and start ``postgres`` on a free 127.0.0.1 port.

    Trust authentication for the superuser ``postgres``; the unix socket lives in
    the temp dir. ``fsync=False`` also turns off synchronous_commit and
    full_page_writes: fine for tests, never for benchmarks (the default keeps
    PostgreSQL's durable settings). ``settings`` adds or overrides GUCs.
    ``dbname`` other than ``postgres`` is created (needs psycopg).
    """
    bindir = find_postgres_bindir()
    run_as = _service_user()
    directory = make_temp_dir("durable-pg-", base_dir or _base_temp_dir(run_as is not None))
    server = PostgresServer("127.0.0.1", 0, "postgres", "postgres", directory, "")
    try:
        (directory / "sock").mkdir()
        _chown_tree(directory, run_as)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LC_ALL": "C",
            "LANG": "C",
            "HOME": str(directory),
            "TZ": "UTC",
        }
        user_kwargs = run_as.popen_kwargs() if run_as else {}
        init = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(directory / "data"),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            cwd=directory,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            **user_kwargs,
        )
        if init.returncode != 0:
            raise ServiceError(f"initdb failed ({init.returncode}):\n{init.stdout}{init.stderr}")

        conf: dict[str, object] = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(directory / "sock"),
            "max_connections": 200,
            "shared_buffers": "128MB",
            "timezone": "UTC",
            "log_timezone": "UTC",
            "log_line_prefix": "%m [%p] ",
        }
        if not fsync:
            conf.update({"fsync": False, "synchronous_commit": False, "full_page_writes": False})
        conf.update(settings or {})
        with open(directory / "data" / "postgresql.conf", "a") as fh:
            fh.write("\n# durable test harness\n")
            fh.writelines(f"{key} = {_pg_conf_value(value)}\n" for key, value in conf.items())

        server.version = subprocess.run(
            [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        for attempt in range(1, START_ATTEMPTS + 1):
            server.port = free_port()
            with open(server.log_path, "ab") as log:
                # SIGQUIT = immediate shutdown: the backends go too.
                server.proc = subprocess.Popen(
                    [
                        str(bindir / "postgres"),
                        "-D",
                        str(directory / "data"),
                        "-p",
                        str(server.port),
                    ],
                    cwd=directory,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent(signal.SIGQUIT),
                    **user_kwargs,
                )
            try:
                _wait(
                    lambda: _postmaster_ready(directory / "data"),
                    server.proc,
                    timeout,
                    "postgres",
                    server.log_path,
                )
                break
            except _Exited as error:
                if attempt == START_ATTEMPTS or not _port_taken(str(error)):
                    raise
        if dbname != "postgres":
            import psycopg

            with psycopg.connect(server.url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{dbname}"')
            server.dbname = dbname
        return server
    except BaseException:
        with contextlib.suppress(Exception):
            _stop_process(server.proc, signal.SIGQUIT, 10)
        shutil.rmtree(directory, ignore_errors=True)
        raise


def _postmaster_ready(data_dir: Path) -> bool:
    """What ``pg_ctl -w`` checks: line 8 of postmaster.pid says ``ready``."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except OSError:
        return False
    return len(lines) >= 8 and lines[7].strip() == "ready"


# --- Redis ------------------------------------------------------------------------


def find_redis_server() -> str:
    """$REDIS_SERVER, else redis-server on $PATH or in /usr/bin."""
    if explicit := os.environ.get("REDIS_SERVER"):
        if not os.access(explicit, os.X_OK):
            raise ServiceError(f"REDIS_SERVER={explicit} is not an executable")
        return explicit
    path = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin")
    if not path:
        raise ServiceError(f"redis-server not found; {REDIS_PACKAGE_HINT}")
    return path


@dataclass
class RedisServer:
    """A running throwaway Redis (no persistence); ``stop()`` removes it."""

    host: str
    port: int
    directory: Path
    version: str
    proc: subprocess.Popen | None = field(repr=False, default=None)

    @property
    def url(self) -> str:
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def log_tail(self, lines: int = 30) -> str:
        return _tail(self.log_path, lines)

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        _stop_process(self.proc, signal.SIGTERM, timeout)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def redis_ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """True if a Redis server answers PING on host:port (no client library needed)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(*, base_dir: str | None = None, timeout: float = 30.0) -> RedisServer:
    """``redis-server`` on a free 127.0.0.1 port, without snapshots or AOF."""
    binary = find_redis_server()
    directory = make_temp_dir("durable-redis-", base_dir or tempfile.gettempdir())
    server = RedisServer("127.0.0.1", 0, directory, "")
    try:
        server.version = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        for attempt in range(1, START_ATTEMPTS + 1):
            server.port = free_port()
            with open(server.log_path, "ab") as log:
                server.proc = subprocess.Popen(
                    [
                        binary,
                        "--port",
                        str(server.port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(directory),
                        "--daemonize",
                        "no",
                        "--logfile",
                        "",
                        "--databases",
                        "16",
                    ],
                    cwd=directory,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent(signal.SIGTERM),
                )
            try:
                _wait(
                    lambda: redis_ping(server.host, server.port),
                    server.proc,
                    timeout,
                    "redis-server",
                    server.log_path,
                )
                break
            except _Exited as error:
                if attempt == START_ATTEMPTS or not _port_taken(str(error)):
                    raise
        return server
    except BaseException:
        with contextlib.suppress(Exception):
            _stop_process(server.proc, signal.SIGKILL, 10)
        shutil.rmtree(directory, ignore_errors=True)
        raise


def main() -> None:
    """Start both servers, print their URLs, and stop them on Ctrl-C."""
    with start_postgres() as pg, start_redis() as redis:
        print(f"DATABASE_URL={pg.url}")
        print(f"REDIS_URL={redis.url}")
        print(f"CELERY_BROKER_URL={redis.url}")
        print("Ctrl-C stops both.", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
