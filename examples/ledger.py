"""Reading and writing the side-effect ledger, on one thread per process.

Why a thread of its own: service calls run inside steps, and the SDK runs
steps on short-lived threads (a fresh pool per invocation, more for ``map``
and ``parallel`` branches). Django opens one connection per thread and only
closes it at the end of a request, which never comes on those threads, so
every invocation would leave connections behind. Routing all ledger queries
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

from django.db import OperationalError, close_old_connections, connections, transaction

from examples.models import LedgerEntry

T = TypeVar("T")

THREAD_NAME = "examples-ledger"
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
            # SQLite's shared-cache mode (the in-memory test database) reports a
            # busy table at once instead of waiting out busy_timeout. The
            # statement did not run, so it is safe to try again shortly.
            if "locked" not in str(error):
                raise
            time.sleep(delay)
    return fn(*args)


def run(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` on the ledger thread and return its result."""
    if threading.current_thread().name.startswith(THREAD_NAME):
        return fn(*args)
    return _executor().submit(_fresh, fn, *args).result()


def close() -> None:
    """Close the ledger thread's database connection (it reopens on next use)."""
    if _pool is not None:
        _pool.submit(connections.close_all).result()


# --- queries ------------------------------------------------------------------------


def _create(service: str, action: str, key: str, data: dict[str, Any]) -> None:
    LedgerEntry.objects.create(service=service, action=action, key=key, data=data)


def _count(service: str, action: str, key: str | None) -> int:
    rows = LedgerEntry.objects.filter(service=service, action=action)
    return (rows.filter(key=key) if key is not None else rows).count()


def _attempt(service: str, key: str) -> int:
    # One transaction, so a "locked" retry never records the attempt twice.
    with transaction.atomic():
        _create(service, LedgerEntry.ATTEMPT, key, {})
        return _count(service, LedgerEntry.ATTEMPT, key)


def _data(service: str, action: str, key: str) -> list[dict[str, Any]]:
    rows = LedgerEntry.objects.filter(service=service, action=action, key=key)
    return list(rows.values_list("data", flat=True))


def _disabled_points() -> set[str]:
    from examples.models import FaultSwitch

    return set(FaultSwitch.objects.filter(disabled=True).values_list("point", flat=True))


def disabled_fault_points() -> set[str]:
    """Fault points an operator switched off (their planned faults are not injected)."""
    return run(_disabled_points)


def record(service: str, action: str, key: str, **data: Any) -> None:
    """Append one effect to the ledger."""
    run(_create, service, action, key, data)


def count(service: str, action: str, key: str | None = None) -> int:
    """How many times ``service.action`` happened (for ``key``, if given)."""
    return run(_count, service, action, key)


def data(service: str, action: str, key: str) -> list[dict[str, Any]]:
    """The data of every ``service.action`` entry for ``key``, oldest first."""
    return run(_data, service, action, key)


def attempts(point: str, key: str) -> int:
    """How many calls were made at fault point ``point`` (e.g. "payment.charge") for ``key``."""
    return count(point.split(".", 1)[0], LedgerEntry.ATTEMPT, f"{point}:{key}")


def add_attempt(point: str, key: str) -> int:
    """Record one more call at ``point`` for ``key``; returns its number (1-based)."""
    return run(_attempt, point.split(".", 1)[0], f"{point}:{key}")
