"""Database access from handler code, on one long-lived thread per process.

Why a thread of its own: code called from a handler (the demos' simulated
services, the approvals app's handler-side API) runs inside steps, and the SDK
runs steps on short-lived threads (a fresh pool per invocation, more for
``map`` and ``parallel`` branches). Django opens one connection per thread and
only closes it at the end of a request, which never comes on those threads, so
every invocation would leave connections behind. Routing all such queries
through one long-lived thread keeps a single connection per process, and
serialises the writes, which SQLite wants anyway.

Call :func:`close` when the database is about to go away (test teardown, worker
shutdown) so this thread's connection does not hold it open.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import OperationalError, close_old_connections, connections

T = TypeVar("T")

THREAD_NAME = "durable-handler-db"
# Back-off before retrying a statement SQLite refused with "locked" (about 5 s in all).
LOCKED_RETRY_DELAYS: tuple[float, ...] = (0.005, 0.01, 0.02, 0.05) + (0.1,) * 48

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
    # Drop a connection that broke or outlived CONN_MAX_AGE, as a request would.
    close_old_connections()
    for delay in LOCKED_RETRY_DELAYS:
        try:
            return fn(*args)
        except OperationalError as error:
            # SQLite's shared-cache mode (an in-memory database) reports a busy
            # table at once instead of waiting out busy_timeout. The statement
            # did not run (``fn`` must be one transaction), so it is safe to try
            # again shortly.
            if "locked" not in str(error):
                raise
            time.sleep(delay)
    return fn(*args)


def run(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` on the handler database thread and return its result."""
    if threading.current_thread().name.startswith(THREAD_NAME):
        return fn(*args)
    return _executor().submit(_fresh, fn, *args).result()


def close() -> None:
    """Close the thread's database connection (it reopens on next use)."""
    if _pool is not None:
        _pool.submit(connections.close_all).result()
