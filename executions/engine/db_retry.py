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
dropped (an immediate shutdown can commit and die before answering), so every
decorated entry point must be harmless to run twice; how each one is, is written
next to it. Where running it twice would answer differently (a checkpoint finds
its own token used; an invocation begin finds the lease taken), the entry point
names a read that tells whether its transaction committed (``if_commit_lost``),
and the retry returns the first attempt's answer when it did.

Only an outermost call retries. Inside a caller's ``transaction.atomic`` block the
error is re-raised at once: the caller's transaction is broken (PostgreSQL aborted
it, or the connection is gone) and only the caller can start it again. Likewise a
decorated call made inside another retrying call (``retry_transient`` or ``call``)
does not retry on its own: the outer one runs the whole unit again, so the budget
is spent once, not once per layer.

Every try starts on a connection that is not known to be broken: a connection
psycopg has marked broken (the server went away) is dropped before each attempt,
and an error that left the connection broken is retried on a new one whatever its
class. Django itself never drops it: a thread whose connection broke outside a
retried call kept it, and every later statement on that thread failed with "the
connection is lost" until the process restarted.

Code that is not a decorated entry point (reads such as ``limits_for_version``, a
worker's own queries, handler-side database access) runs through ``call``, which
retries it the same way; ``attempt`` makes one try and only drops a lost
connection, for callers that pace their own retries (the lease renewer).
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, cast

from django.conf import settings
from django.db import Error as DjangoError
from django.db import InterfaceError, OperationalError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from executions.engine.errors import ServiceError

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
    classes, while ``executions.engine.rows`` runs statements on psycopg's own cursor and
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
        return call(fn, *args, **kwargs)

    retrying.retries_transient = True  # type: ignore[attr-defined]
    return retrying


@dataclass(frozen=True)
class _CommitOutcome:
    """What an attempt would have returned had its COMMIT been acknowledged."""

    result: Any
    committed: Callable[[], bool]
    hooks: list[Callable[[], object]]


class _State(threading.local):
    depth = 0  # retrying calls active on this thread; the outermost (depth 1) owns the retries
    outcome: _CommitOutcome | None = None


_state = _State()


def call(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """``fn(*args, **kwargs)``, retried like a ``retry_transient`` entry point.

    ``fn`` must be safe to run again after a rollback (one transaction, or reads).
    Inside another retrying call it runs once: the outer call retries the unit.
    """
    if getattr(fn, "retries_transient", False):
        return fn(*args, **kwargs)  # a ``retry_transient`` entry point retries itself
    if _state.depth:
        return _nested(fn, args, kwargs)
    deadline = time.monotonic() + budget_seconds()
    attempt_number = 0
    unknown: _CommitOutcome | None = None  # an attempt whose COMMIT may have gone through
    while True:
        try:
            if unknown is not None and _once(unknown.committed, (), {}):
                return _settle(fn, unknown)
            unknown = None
            return _once(fn, args, kwargs)
        except Exception as exc:
            if not is_database_error(exc):
                raise
            reconnected = _drop_if_lost(exc)
            if reconnected and unknown is None:
                unknown = _state.outcome
            attempt_number += 1
            pause = _pause_before_retry(fn, exc, attempt_number, deadline, reconnected)
        finally:
            _state.outcome = None
        time.sleep(pause)


def attempt(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """One try of ``fn``, for callers that pace their own retries; nothing inside it retries.

    It starts on a connection not known to be broken, and a connection that the
    error left lost or broken is closed before the error propagates, so the
    caller's next try opens a fresh one.
    """
    try:
        return _once(fn, args, kwargs)
    except Exception as exc:
        if is_database_error(exc):
            _drop_if_lost(exc)
        raise
    finally:
        _state.outcome = None


def if_commit_lost(result: Any, committed: Callable[[], bool]) -> None:
    """Say, as the last step of a retried call's transaction, what its COMMIT would return.

    A connection lost during COMMIT leaves it unknown whether the transaction
    committed (PostgreSQL may have written it and died before answering). Run again,
    a call finds its own writes and answers differently: a checkpoint finds its token
    used, a claim finds the work claimed. So the retry first runs ``committed()``, a
    read on a new connection that tells whether this transaction's writes are there,
    and if they are it returns ``result`` and runs the transaction's on-commit hooks,
    as if the acknowledgement had arrived. Only the outermost call's transaction counts.
    """
    connection = transaction.get_connection()
    if _state.depth != 1 or not connection.in_atomic_block or connection.savepoint_ids:
        return
    hooks = [hook for _savepoints, hook, _robust in connection.run_on_commit]
    _state.outcome = _CommitOutcome(result, committed, hooks)


@contextlib.contextmanager
def if_autocommit_lost(
    result: Any, committed: Callable[[], bool], hooks: list[Callable[[], object]]
) -> Iterator[None]:
    """``if_commit_lost`` for a unit that is one statement in autocommit mode.

    Wrap the statement: should the connection drop before its answer arrives, the
    retry runs ``committed()`` and, if the statement did commit, returns ``result``
    and runs ``hooks`` (the unit's after-commit work). Once the answer arrived the
    check is dropped again, so later statements of the same call are not mistaken for it.
    """
    armed = _state.depth == 1 and not transaction.get_connection().in_atomic_block
    if armed:
        _state.outcome = _CommitOutcome(result, committed, hooks)
    yield
    if armed:
        _state.outcome = None


def call_verified(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Like ``call``, but ``fn`` is never applied twice: it runs as one transaction, and
    after a lost connection its COMMIT is checked instead of assumed lost.

    For units whose second run would repeat an effect (an insert, a claim) and that
    name no check of their own (``if_commit_lost``). On PostgreSQL the check is the
    transaction's status (``pg_xact_status`` of its id), one more statement per unit;
    SQLite has no connection to lose between COMMIT and its answer, so there ``fn``
    runs as ``call`` runs it.
    """
    if transaction.get_connection().vendor != "postgresql":
        return call(fn, *args, **kwargs)

    @functools.wraps(fn, updated=())  # fn's name in the log lines, not its retry marker
    def verified(*args: Any, **kwargs: Any) -> R:
        return _verified_unit(fn, *args, **kwargs)

    return call(verified, *args, **kwargs)


call_verified.retries_transient = True  # type: ignore[attr-defined]


def _verified_unit(fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    with transaction.atomic():
        result = fn(*args, **kwargs)
        with transaction.get_connection().cursor() as cursor:
            cursor.execute("SELECT pg_current_xact_id_if_assigned()::text")
            (xid,) = cursor.fetchone()
        if xid is not None:  # None: the unit wrote nothing, so running it again is harmless
            if_commit_lost(result, functools.partial(_transaction_committed, xid))
    return result


def _transaction_committed(xid: str) -> bool:
    with transaction.get_connection().cursor() as cursor:
        cursor.execute("SELECT pg_xact_status(%s::xid8)", [xid])
        (status,) = cursor.fetchone()
    return bool(status == "committed")


def _settle(fn: Callable[..., R], outcome: _CommitOutcome) -> R:
    logger.warning("%s: the transaction had committed before the connection was lost", fn.__qualname__)
    for hook in outcome.hooks:
        try:
            hook()
        except Exception:  # as Django does for a robust on-commit hook: log it and go on
            logger.exception("%s: on-commit hook failed", fn.__qualname__)
    return cast(R, outcome.result)


def _nested(fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
    _state.depth += 1
    try:
        return fn(*args, **kwargs)
    finally:
        _state.depth -= 1


def _once(fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
    if not transaction.get_connection().in_atomic_block:
        drop_broken_connections()
    return _nested(fn, args, kwargs)


def _drop_if_lost(exc: BaseException) -> bool:
    """Close the connection if ``exc`` lost it or left it broken; True if it was closed."""
    connection = transaction.get_connection()
    if connection.in_atomic_block:
        return False  # the caller's transaction owns the connection; it recovers it
    if classify(exc) is Transient.RECONNECT or is_broken(connection):
        _close_quietly(connection)
        return True
    return False


def is_database_error(exc: BaseException) -> bool:
    """A database error of Django's (``InterfaceError`` included) or of psycopg's own classes."""
    if isinstance(exc, (DjangoError, sqlite3.Error)):
        return True
    return psycopg is not None and isinstance(exc, psycopg.Error)


def is_broken(connection: BaseDatabaseWrapper) -> bool:
    """Whether the driver knows this connection is unusable (psycopg: the server went away)."""
    raw = connection.connection
    return raw is not None and bool(getattr(raw, "closed", False))


def drop_broken_connections() -> None:
    """Close this thread's connections that the driver knows are broken (no round trip)."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block and is_broken(connection):
            _close_quietly(connection)


def drop_stale_connections() -> None:
    """Close this thread's connections that broke or outlived ``CONN_MAX_AGE`` (no round trip).

    What Django's ``close_old_connections`` does at the start of a request, minus the
    health check it arms (one ``SELECT 1`` before the next query): for threads that run
    many small units of work, where a check per unit would cost a round trip each.
    """
    now = time.monotonic()
    for connection in connections.all(initialized_only=True):
        if connection.in_atomic_block or connection.connection is None:
            continue
        if is_broken(connection) or (connection.close_at is not None and now >= connection.close_at):
            _close_quietly(connection)


def _pause_before_retry(
    fn: Callable[..., object], exc: Exception, attempt: int, deadline: float, reconnected: bool
) -> float:
    """The pause before the next attempt, or re-raise ``exc`` when there is none to make.

    An error of any class that left the connection broken (``reconnected``) is
    transient: the same call on a new connection is a different matter.
    """
    kind = classify(exc)
    connection = transaction.get_connection()
    if connection.in_atomic_block:
        raise exc  # the caller's transaction is the one to run again
    if kind is None and reconnected:
        kind = Transient.RECONNECT
    if kind is None:
        raise exc  # not transient: the same call fails the same way again
    pause = _backoff(attempt)
    if time.monotonic() + pause > deadline:
        logger.error("%s: giving up after %d attempts: %s", fn.__qualname__, attempt, exc)
        raise exc
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
    except DjangoError:
        pass  # closing a dead connection may fail; it is dropped either way
