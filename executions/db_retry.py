"""Engine writes survive transient database errors: retried with jittered backoff.

A transient error is one the same statement would not hit a moment later: SQLite's
"database is locked" (another writer held the file past the busy timeout),
PostgreSQL's serialization failure (40001) and deadlock (40P01), and a lost or
closed connection (a restarted server, a dropped TCP connection, a failover). The
engine's entry points (checkpoint, invocation begin/finish/expire, lease renewal,
timers, callbacks, plain-invoke claim/completion/recovery, execution start, the
scheduler's queries) are decorated with ``retry_transient``: each one is a single
transaction that re-reads everything it needs, so running it again after a
rollback is the same as running it for the first time.

A retry may also follow a COMMIT that did reach the server before the connection
dropped, so every decorated entry point must be harmless to run twice; how each
one is, is written next to it.

Only an outermost call retries. Inside a caller's ``transaction.atomic`` block the
error is re-raised at once: the caller's transaction is broken (PostgreSQL aborted
it, or the connection is gone) and only the caller can start it again.
"""

from __future__ import annotations

import enum
import functools
import logging
import random
import sqlite3
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from executions.errors import ServiceError

try:  # psycopg is only needed for PostgreSQL; SQLite-only installs may lack it
    import psycopg
except ImportError:  # pragma: no cover - the project's requirements include it
    psycopg = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_BUDGET_SECONDS = 30.0
FIRST_PAUSE_SECONDS = 0.05
MAX_PAUSE_SECONDS = 2.0

# SQLSTATEs after which the same transaction, run again, normally succeeds.
RETRY_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
# SQLSTATEs that mean the connection (or the server behind it) went away: reconnect first.
RECONNECT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})  # shutdowns, too many clients
SQLITE_BUSY_MESSAGES = ("database is locked", "database table is locked", "database is busy")


class Transient(enum.Enum):
    """What a failed call needs before it runs again."""

    RETRY = "retry"  # run it again on the same connection
    RECONNECT = "reconnect"  # close the connection first; Django opens a new one


def classify(exc: BaseException) -> Transient | None:
    """Whether ``exc`` is transient, and how to recover; None for every other error.

    Looks at the exception and at its cause: Django wraps driver errors in its own
    classes, while ``executions.rows`` runs statements on psycopg's own cursor and
    gets psycopg's classes unwrapped.
    """
    if isinstance(exc, ServiceError):
        return None  # wrong input: the same call fails the same way again
    chain = [error for error in (exc, exc.__cause__) if error is not None]
    for error in chain:
        if kind := _by_sqlstate(getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)):
            return kind
    if any(_is_sqlite_busy(error) for error in chain):
        return Transient.RETRY
    if any(_is_connection_error(error) for error in chain):
        return Transient.RECONNECT
    return None


def _by_sqlstate(sqlstate: str | None) -> Transient | None:
    if not sqlstate:
        return None
    if sqlstate in RETRY_SQLSTATES:
        return Transient.RETRY
    if sqlstate.startswith("08") or sqlstate in RECONNECT_SQLSTATES:  # class 08: connection exception
        return Transient.RECONNECT
    return None


def _is_sqlite_busy(error: BaseException) -> bool:
    if not isinstance(error, (OperationalError, sqlite3.OperationalError)):
        return False
    message = str(error).lower()
    return any(busy in message for busy in SQLITE_BUSY_MESSAGES)


def _is_connection_error(error: BaseException) -> bool:
    """A closed or lost connection: an interface error, or a psycopg operational error
    without a SQLSTATE (the server never answered, so it could not send one)."""
    if isinstance(error, InterfaceError):
        return True
    if psycopg is None:
        return False
    if isinstance(error, psycopg.InterfaceError):
        return True
    return isinstance(error, psycopg.OperationalError) and not getattr(error, "sqlstate", None)


def budget_seconds() -> float:
    return float(getattr(settings, "DURABLE_DB_RETRY_SECONDS", DEFAULT_BUDGET_SECONDS))


def retry_transient(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` again on transient database errors, for up to ``DURABLE_DB_RETRY_SECONDS``.

    Pauses grow exponentially (50 ms doubling up to 2 s) with jitter, so writers
    that collided do not collide again in step. Each retry is logged. Once the
    budget is spent, the last error is raised.
    """

    @functools.wraps(fn)
    def retrying(*args: P.args, **kwargs: P.kwargs) -> R:
        deadline = time.monotonic() + budget_seconds()
        attempt = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except DatabaseError as exc:
                attempt += 1
                pause = _pause_before_retry(fn, exc, attempt, deadline)
            except Exception as exc:  # psycopg's own classes: not DatabaseError subclasses
                if psycopg is None or not isinstance(exc, psycopg.Error):
                    raise
                attempt += 1
                pause = _pause_before_retry(fn, exc, attempt, deadline)
            time.sleep(pause)

    return retrying


def _pause_before_retry(fn: Callable[..., object], exc: Exception, attempt: int, deadline: float) -> float:
    """The pause before the next attempt, or re-raise ``exc`` when there is none to make."""
    kind = classify(exc)
    connection = transaction.get_connection()
    if kind is None or connection.in_atomic_block:
        raise exc  # not transient, or the caller's transaction is the one to run again
    pause = _backoff(attempt)
    if time.monotonic() + pause > deadline:
        logger.error("%s: giving up after %d attempts: %s", fn.__qualname__, attempt, exc)
        raise exc
    if kind is Transient.RECONNECT:
        _close_quietly(connection)
    logger.warning(
        "%s: transient database error, retry %d in %.2f s%s: %s",
        fn.__qualname__,
        attempt,
        pause,
        " on a new connection" if kind is Transient.RECONNECT else "",
        exc,
    )
    return pause


def _backoff(attempt: int) -> float:
    """Full-size pause halved at random: 25-50 ms, 50-100 ms, ... up to 1-2 s."""
    ceiling = min(MAX_PAUSE_SECONDS, FIRST_PAUSE_SECONDS * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def _close_quietly(connection: BaseDatabaseWrapper) -> None:
    """Drop the broken connection; Django opens a fresh one on the next query."""
    try:
        connection.close()
    except DatabaseError:
        pass  # closing a dead connection may fail; it is dropped either way
