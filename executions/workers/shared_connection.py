"""One database connection for a process's checkpoints, lent to whichever thread calls.

The SDK calls its service client from threads of its own: a checkpoint batcher
thread per invocation, and the handler's thread for state pages. Django gives
every thread its own connection and never closes those of threads it does not
manage, so the client cannot simply query from the calling thread. Handing every
call to one long-lived thread did keep one connection, but cost two thread
switches per checkpoint (1-2 ms per step on a loaded machine, issue 10's
profile). Instead, this connection is installed as the calling thread's default
connection for the length of the call, then the thread's own is put back. A lock
serialises calls; the SDK makes one at a time anyway.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections
from django.db.backends.base.base import BaseDatabaseWrapper

T = TypeVar("T")


class SharedConnection:
    def __init__(self, alias: str = DEFAULT_DB_ALIAS) -> None:
        self._alias = alias
        self._lock = threading.Lock()
        self._connection: BaseDatabaseWrapper = connections.create_connection(alias)
        self._connection.inc_thread_sharing()  # used from many threads, one at a time

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` with this connection as the calling thread's default one."""
        with self._lock:
            own = connections[self._alias]
            connections[self._alias] = self._connection
            try:
                return fn(*args, **kwargs)
            finally:
                connections[self._alias] = own

    def check(self) -> None:
        """Drop the connection if it broke or aged out (CONN_MAX_AGE, CONN_HEALTH_CHECKS)."""
        self.run(close_old_connections)

    def close(self) -> None:
        with self._lock:
            self._connection.close()
