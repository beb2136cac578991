"""A cluster on a PostgreSQL of its own, for fault tests that restart the database under it.

The session's PostgreSQL serves every other test; restarting it would break
them, so a fault test starts a dedicated server (``tests.servers.start_postgres``)
and points its worker, scheduler and web processes at it. This module:

- restarts that server the way ``pg_ctl restart -m fast|immediate`` does
  (:func:`restart_postgres`), keeping it a child of the test process that
  dies with it;
- prepares its database in a child process (``python -m tests.fault_cluster
  setup``: migrate, the demo functions, a long-step handler, an API key),
  since the test process's own Django talks to the session database;
- reads the cluster's tables with plain psycopg (:class:`ClusterDb`).
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.servers import (
    PostgresServer,
    _die_with_parent,
    _postmaster_ready,
    _service_user,
    _wait,
    find_postgres_bindir,
)

SHUTDOWN_SIGNALS = {"fast": signal.SIGINT, "immediate": signal.SIGQUIT}  # what pg_ctl -m sends


@dataclass(frozen=True)
class Restart:
    """When a restart began (the shutdown signal) and when the server accepted connections again."""

    mode: str
    began: datetime.datetime
    ready: datetime.datetime

    @property
    def downtime(self) -> float:
        return (self.ready - self.began).total_seconds()


def restart_postgres(
    server: PostgresServer,
    mode: str,
    *,
    while_down: Callable[[], object] | None = None,
    timeout: float = 60.0,
) -> Restart:
    """Stop the postmaster with ``mode``'s signal, wait for it to exit, start it again.

    ``fast`` ends every session (clients get 57P01) and writes a shutdown checkpoint;
    ``immediate`` drops everything at once, and the new server runs crash recovery.
    Same data directory, same port: clients reconnect to the address they know.
    ``while_down`` runs between the two (e.g. wait until a client noticed the outage).
    """
    assert server.proc is not None, "the server was not started by tests.servers"
    began = now()
    server.proc.send_signal(SHUTDOWN_SIGNALS[mode])
    server.proc.wait(timeout=timeout)
    if while_down is not None:
        while_down()
    run_as = _service_user()
    bindir = find_postgres_bindir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}
    env["HOME"] = str(server.directory)
    with open(server.log_path, "ab") as log:
        server.proc = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(server.data_dir), "-p", str(server.port)],
            cwd=server.directory,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(signal.SIGQUIT),
            **(run_as.popen_kwargs() if run_as else {}),
        )
    _wait(lambda: _postmaster_ready(server.data_dir), server.proc, timeout, "postgres", server.log_path)
    return Restart(mode, began, now())


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class ClusterDb:
    """Reads the cluster's tables; a new connection per call, so a restart between calls is harmless."""

    def __init__(self, url: str) -> None:
        self.url = url

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()

    def value(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        found = self.rows(sql, params)
        return found[0][0] if found else None


# --- preparing the database (run in a child process with DATABASE_URL set) -----------------


def setup(extra_functions: dict[str, str]) -> dict[str, str]:
    """Migrate, register the demo functions and ``extra_functions`` (name: handler), issue an API key."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "durable_console.settings")
    django.setup()
    from django.core.management import call_command

    from durable_console.bootstrap import register_demo_functions
    from executions.api import access_keys
    from executions.engine.functions import function_register

    call_command("migrate", verbosity=0)
    register_demo_functions()
    for name, handler in extra_functions.items():
        function_register(name=name, handler=handler)
    key = access_keys.key_create(description="fault tests")
    return {"AccessKeyId": key.access_key_id, "SecretAccessKey": key.secret_access_key}


if __name__ == "__main__":
    # python -m tests.fault_cluster setup '{"name": "module:handler"}'
    print(json.dumps(setup(json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})), flush=True)
