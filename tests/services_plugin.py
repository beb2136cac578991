"""pytest plugin: the whole test session runs against a throwaway PostgreSQL and Redis.

Loaded by ``-p tests.services_plugin`` in pytest.ini's addopts (``pythonpath = .``
makes it importable; pytest applies it before importing ``-p`` plugins). It must
act before pytest-django reads the settings, which pytest-django does in its
``pytest_load_initial_conftests`` hook; a conftest.py is loaded only during that
hook, too late. So this plugin wraps that hook (a hook wrapper runs before every
plain implementation), starts the servers and sets ``DATABASE_URL``,
``REDIS_URL`` and ``CELERY_BROKER_URL`` before pytest-django imports
the settings (``tests.settings``: the production module with a fast password hasher).

Environment:

- ``DURABLE_TEST_DATABASE=sqlite``: no PostgreSQL, tests run on SQLite (quick
  local runs; PostgreSQL-only tests skip).
- ``DURABLE_TEST_REDIS=off``: no Redis (in-memory channel layer, no broker;
  tests that need Redis skip).
- ``TEST_DATABASE_URL`` / ``TEST_REDIS_URL``: use these servers instead of
  starting throwaway ones.

``DURABLE_VAR_DIR`` always points at a temp dir, so tests never touch ``var/``.

The servers stop when pytest unconfigures (also after Ctrl-C or SIGTERM), and
die with the pytest process in any case.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field

import pytest

from tests.servers import (
    PostgresServer,
    RedisServer,
    ServiceError,
    make_temp_dir,
    start_postgres,
    start_redis,
)

SQLITE_VALUES = {"sqlite", "sqlite3"}
OFF_VALUES = {"off", "none", "no", "0", "false"}


@dataclass
class TestServices:
    """What the session runs against; ``tests.conftest`` exposes it as fixtures."""

    __test__ = False  # not a test class, despite the name

    database: str = "sqlite"  # "postgresql" or "sqlite"
    database_url: str = ""
    redis_url: str = ""
    postgres: PostgresServer | None = None
    redis: RedisServer | None = None
    temp_dir: str = ""
    notes: list[str] = field(default_factory=list)

    def stop(self) -> None:
        for server in (self.redis, self.postgres):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.stop()
        self.redis = self.postgres = None
        if self.temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = ""


_services: TestServices | None = None


def current_services() -> TestServices:
    """The session's services (SQLite and no Redis if this plugin did not run)."""
    return _services if _services is not None else TestServices()


def start_test_services() -> TestServices:
    """Start (or adopt) the servers and point the environment at them."""
    services = TestServices()
    try:
        database_mode = os.environ.get("DURABLE_TEST_DATABASE", "postgresql").strip().lower()
        if database_mode in SQLITE_VALUES:
            os.environ.pop("DATABASE_URL", None)
            services.notes.append("database: SQLite (DURABLE_TEST_DATABASE)")
        elif database_mode in {"postgresql", "postgres", "pg", ""}:
            services.database = "postgresql"
            if url := os.environ.get("TEST_DATABASE_URL"):
                services.database_url = url
                services.notes.append("database: TEST_DATABASE_URL")
            else:
                began = time.monotonic()
                services.postgres = start_postgres(fsync=False)
                services.database_url = services.postgres.url
                services.notes.append(
                    f"database: throwaway {services.postgres.version} on port "
                    f"{services.postgres.port} ({time.monotonic() - began:.1f}s to start)"
                )
            os.environ["DATABASE_URL"] = services.database_url
        else:
            raise ServiceError(f"DURABLE_TEST_DATABASE={database_mode!r}: expected 'postgresql' or 'sqlite'")

        if os.environ.get("DURABLE_TEST_REDIS", "").strip().lower() in OFF_VALUES:
            for name in ("REDIS_URL", "CELERY_BROKER_URL"):
                os.environ.pop(name, None)
            services.notes.append("redis: off (DURABLE_TEST_REDIS)")
        else:
            if url := os.environ.get("TEST_REDIS_URL"):
                services.redis_url = url
                services.notes.append("redis: TEST_REDIS_URL")
            else:
                services.redis = start_redis()
                services.redis_url = services.redis.url
                services.notes.append(
                    f"redis: throwaway {services.redis.version.split(' sha=')[0]} "
                    f"on port {services.redis.port}"
                )
            os.environ["REDIS_URL"] = services.redis_url
            os.environ["CELERY_BROKER_URL"] = services.redis_url

        # Keep tests away from the developer's var/ (embedded database, secret key).
        services.temp_dir = str(make_temp_dir("durable-test-", tempfile.gettempdir()))
        os.environ["DURABLE_VAR_DIR"] = os.path.join(services.temp_dir, "var")
        os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key-" + "x" * 40)
        # Tests register handlers from tests.* (beside the demos' examples.*) and run remote
        # handlers on loopback ports; processes the tests start inherit both.
        listed = os.environ.get("DURABLE_HANDLER_MODULES", "")
        os.environ["DURABLE_HANDLER_MODULES"] = ",".join(filter(None, (listed, "tests")))
        os.environ.setdefault("DURABLE_REMOTE_HANDLER_ORIGINS", "http://127.0.0.1")
    except BaseException:
        services.stop()
        raise
    return services


def _stop_services() -> None:
    global _services
    if _services is not None:
        _services.stop()
        _services = None


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser, args):
    global _services
    namespace = early_config.known_args_namespace
    if _services is None and not (getattr(namespace, "help", False) or getattr(namespace, "version", False)):
        try:
            _services = start_test_services()
        except ServiceError as error:
            raise pytest.UsageError(f"test services: {error}") from error
        early_config.add_cleanup(_stop_services)
        atexit.register(_services.stop)
        # SIGTERM (CI timeouts, `kill`) would skip all cleanup; make it a Ctrl-C.
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        ):
            signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
            early_config.add_cleanup(lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
    return (yield)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"services: {note}" for note in current_services().notes]
