"""Database access from handler code, on one long-lived thread per process.

Why a thread of its own: code called from a handler (the demos' simulated
services, the approvals app's handler-side API) runs inside steps, and the SDK
runs steps on short-lived threads (a fresh pool per invocation, more for
``map`` and ``parallel`` branches). Django opens one connection per thread and
only closes it at the end of a request, which never comes on those threads, so
every invocation would leave connections behind. Routing all such queries
through one long-lived thread keeps a single connection per process, and
serialises the writes, which SQLite wants anyway.

Each unit of work (``fn``) survives a restarting database: a transient error
(a lost connection, SQLite's "locked", a serialization failure) drops the broken
connection and runs the unit again with backoff, instead of failing the handler's
step with an ``OperationalError`` that its retry strategy would count as an
attempt. A unit runs as one transaction, and a COMMIT whose answer was lost is
checked rather than assumed lost (``executions.engine.db_retry.call_verified``), so a
ledger entry is never written twice. A sandbox child checks this thread's
connection at the start of each job (:func:`check_connection`).

Call :func:`close` when the database is about to go away (test teardown, worker
shutdown) so this thread's connection does not hold it open.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import close_old_connections, connections

from executions.engine import db_retry

T = TypeVar("T")

THREAD_NAME = "durable-handler-db"

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _forget_pool() -> None:
    # A pool inherited through fork() (Celery's prefork workers) has no live
    # thread, and the lock may have been held by a thread that is gone.
    global _pool, _lock
    _pool, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME)
        return _pool


def _fresh(fn: Callable[..., T], *args: Any) -> T:
    # Drop a connection that broke or outlived CONN_MAX_AGE, as a request would (without
    # the health-check round trip: that is once per job, see check_connection).
    db_retry.drop_stale_connections()
    return db_retry.call_verified(fn, *args)


def run(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` on the handler database thread and return its result."""
    if threading.current_thread().name.startswith(THREAD_NAME):
        return fn(*args)
    return _executor().submit(_fresh, fn, *args).result()


def check_connection() -> None:
    """Check the thread's connection before the next query (Django's CONN_HEALTH_CHECKS).

    For the start of a job that may come long after the last one: a connection the
    database dropped meanwhile is replaced before handler code needs it.
    """
    if _pool is not None:
        _pool.submit(close_old_connections).result()


def close() -> None:
    """Close the thread's database connection (it reopens on next use)."""
    if _pool is not None:
        _pool.submit(connections.close_all).result()
