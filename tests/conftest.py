"""Generic fixtures: the session's services and processes started by a test.

The throwaway PostgreSQL and Redis themselves are started by
``tests/services_plugin.py`` before Django's settings are read.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import pytest

from tests.polling import WaitTimeout, wait_until
from tests.services_plugin import TestServices, current_services

REPO_ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


# --- services ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def services() -> TestServices:
    """What the session runs against (see tests/services_plugin.py)."""
    return current_services()


@pytest.fixture(scope="session")
def redis_url(services: TestServices) -> str:
    """The session's Redis (shared by all tests: do not FLUSHALL it)."""
    if not services.redis_url:
        pytest.skip("needs Redis (DURABLE_TEST_REDIS is off)")
    return services.redis_url


@pytest.fixture(scope="session")
def requires_postgresql(services: TestServices) -> None:
    """Skip (only when DURABLE_TEST_DATABASE=sqlite) a test that needs PostgreSQL."""
    if services.database != "postgresql":
        pytest.skip("needs PostgreSQL (DURABLE_TEST_DATABASE=sqlite)")


@pytest.fixture(autouse=True)
def forget_function_limits() -> Iterator[None]:
    """Versions never change in a real database, so each process caches their limits;
    tests roll back and reuse ids (SQLite), so every test starts with an empty cache."""
    from executions.engine import functions

    functions._limits_cache.clear()
    yield
    functions._limits_cache.clear()


@pytest.fixture(autouse=True)
def forget_console_counts() -> Iterator[None]:
    """The console caches counts for a few seconds (in Redis, shared by the session): a test
    must not see an earlier test's, nor leave a refresh running into the next one."""
    from executions.queries import cache as console_cache

    console_cache.forget()
    yield
    console_cache.wait_for_refreshes()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker) -> Iterator[None]:
    """pytest-django's, plus: end stray sessions before the test database is dropped.

    A connection left open by a thread (or a process) would make DROP DATABASE
    wait 5 s and fail; such leaks are reported as a warning instead.
    """
    yield
    from django.db import connections

    with django_db_blocker.unblock():
        for alias in connections:
            connection = connections[alias]
            if connection.vendor != "postgresql":
                continue
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                (stray,) = cursor.fetchone()
            if stray:
                warnings.warn(
                    f"{stray} session(s) on the test database {alias!r} were still open at the "
                    "end of the run (a thread or process that never closed its Django "
                    "connection); they were terminated.",
                    pytest.PytestWarning,
                    stacklevel=1,
                )


def database_url_for_children() -> str | None:
    """A DATABASE_URL naming the database the tests use now (test_… once set up).

    ``None`` for SQLite: an in-memory test database cannot be shared.
    """
    from django.db import connection

    params = connection.settings_dict
    if connection.vendor != "postgresql":
        return None
    user = quote(params.get("USER") or "", safe="")
    password = quote(params.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = params.get("HOST") or "127.0.0.1"
    port = f":{params['PORT']}" if params.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{quote(params['NAME'], safe='')}"


def child_process_env(overrides: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The environment for a process a test starts: ours, pointed at the test database.

    In ``overrides`` a value of ``None`` removes the variable.
    """
    env = dict(os.environ)
    if url := database_url_for_children():
        env["DATABASE_URL"] = url
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in (overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


# --- processes started by a test ----------------------------------------------------


@dataclass
class SpawnedProcess:
    """A process started by ``spawn_process``, in its own process group."""

    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen = field(repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def is_running(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 50) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_until(
        self,
        predicate: Callable[[], T],
        timeout: float = 10.0,
        message: str = "condition",
        *,
        allow_exit: bool = False,
        ignore: tuple[type[BaseException], ...] = (),
    ) -> T:
        """``wait_until`` that fails at once, with the log, if the process exits."""

        def check() -> T:
            result = predicate()
            if not result and not allow_exit and self.proc.poll() is not None:
                raise WaitTimeout(
                    f"{self.name} exited with code {self.proc.returncode} while waiting for "
                    f"{message}; last log lines:\n{self.log_tail()}"
                )
            return result

        try:
            return wait_until(check, timeout, message, ignore=ignore)
        except WaitTimeout as error:
            if "last log lines" in str(error):
                raise
            raise WaitTimeout(f"{error}\n{self.name} log tail:\n{self.log_tail()}") from None

    def wait_for_log(self, text: str, timeout: float = 10.0) -> None:
        self.wait_until(lambda: text in self.log_text(), timeout, f"{text!r} in {self.name} log")

    def wait_exit(self, timeout: float = 10.0) -> int:
        self.wait_until(
            lambda: self.proc.poll() is not None, timeout, f"{self.name} to exit", allow_exit=True
        )
        return self.proc.returncode

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the whole process group."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM the process group, then SIGKILL it after ``timeout``."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # Children left behind in the group go too.
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        return self.proc.returncode


_spawned_key = pytest.StashKey[list[SpawnedProcess]]()


@pytest.fixture
def spawn_process(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., SpawnedProcess]]:
    """Factory: ``spawn_process(argv, env=None, name=None, cwd=None) -> SpawnedProcess``.

    The process runs in the repository root (or ``cwd``) in a new process group,
    with ``child_process_env(env)``; stdout and stderr go to a log file under a
    temp dir. It is killed (its whole group) at teardown; if the test failed,
    the tail of its log is added to the failure report.
    """
    spawned: list[SpawnedProcess] = request.node.stash.setdefault(_spawned_key, [])
    log_dir = tmp_path_factory.mktemp("processes")

    def spawn(
        argv: Sequence[str],
        *,
        env: Mapping[str, str | None] | None = None,
        name: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> SpawnedProcess:
        argv = [str(arg) for arg in argv]
        label = name or Path(argv[0]).name
        log_path = log_dir / f"{len(spawned):02d}-{label.replace('/', '_')}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv,
                cwd=cwd or REPO_ROOT,
                env=child_process_env(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = SpawnedProcess(label, argv, log_path, proc)
        spawned.append(process)
        return process

    yield spawn
    for process in reversed(spawned):
        process.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed and report.when in {"setup", "call"}:
        for process in item.stash.get(_spawned_key, []):
            state = "running" if process.is_running() else f"exited {process.returncode}"
            report.sections.append(
                (
                    f"log of {process.name} (pid {process.pid}, {state}): {process.log_path}",
                    process.log_tail(60) or "(empty)",
                )
            )
    return report


# Browser fixtures are defined once here, so the session-wide Chromium is shared by every module.
from tests.browser_support import chromium, console, live_console, page  # noqa: E402, F401
