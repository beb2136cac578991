"""The common checkpoint as one statement, from what the invocation already knows.

A worker's checkpoints of one invocation follow each other: nothing but this
invocation writes operations of its execution while it holds the token, so the
execution row and the operations it committed a moment ago are still what the
database holds, unless something else changed the execution in between (a
callback answered, a timer fired, an operator stopped or paused it, the lease
was taken over). ``CheckpointCache`` keeps that knowledge for the invocation in
progress; ``try_checkpoint`` validates and applies the batch against it, exactly
as the locking path does, and writes the result as one statement in autocommit
mode (one round trip, one transaction, a prepared statement per shape):

    WITH guard AS (UPDATE execution SET counters ... WHERE id = .. AND every
                   counter still has the value this invocation last committed
                   AND status = 'RUNNING' AND the lease is this invocation's
                   RETURNING id),
         operations and history events written only if guard matched a row
    SELECT count(*) FROM guard

The guard takes the execution's row lock, as the locking path does, so nothing
can slip in between. If it matches nothing, nothing was written and the caller
runs the locking path (``executions.engine.checkpoint``), which re-reads
everything, answers with what changed meanwhile, or raises the right error.
Batches the fast path does not take (closing the execution, callbacks, chained
invokes, a due timer, a batch the cache cannot validate) go the locking way from
the start. PostgreSQL only: on SQLite writers are serialised anyway.
"""

from __future__ import annotations

import copy
import datetime
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections, models

from executions.engine import clock, db_retry
from executions.engine import effects as dispatch
from executions.engine.appliers import apply_update
from executions.engine.changes import OPERATION_UPDATE_FIELDS, ChangeSet
from executions.engine.errors import InvalidParameterValue
from executions.engine.rows import RowIO, execute_one, rows
from executions.engine.tokens import CheckpointToken
from executions.engine.validation import StoredOp, validate_batch
from executions.engine.wire import TimestampFormat, operation_to_wire
from executions.models import Execution, ExecutionStatus, HistoryEvent, Operation
from executions.vocabulary import OperationType, plain

# Members bound once as plain str (vocabulary.plain): the per-update loop compares with these,
# and looking a member up on its class costs ~80 ns on Python 3.11 (validate_batch of 20
# updates went from 32 to 60-90 us with class lookups).
_CONTEXT, _STEP, _WAIT = plain((OperationType.CONTEXT, OperationType.STEP, OperationType.WAIT))

M = TypeVar("M", bound=models.Model)

# Operation types whose updates only create or change operations and append events.
FAST_TYPES = plain(frozenset({_STEP, _CONTEXT, _WAIT}))
# The execution fields a fast checkpoint may change; any other change goes the locking way.
COUNTERS = ("change_seq", "seen_seq", "checkpoint_seq", "operation_count", "event_count", "wake_at")
# The fields that, unchanged since this invocation's last checkpoint, prove nothing else
# wrote the execution: every other writer bumps one of them or the status.
GUARDED = ("invocation_count", "checkpoint_seq", "change_seq", "operation_count", "event_count")


@dataclass
class CheckpointCache:
    """What one invocation knows of its execution between its checkpoints.

    ``maybe_existing`` holds every operation id that may exist in the database: the
    ones the invocation was given, plus every id a checkpoint of this invocation
    named. An id outside it certainly does not exist (only this invocation's
    checkpoints create operations while it holds the token), so an update naming
    it creates the operation. ``None``: the invocation's initial state came in
    pages, so the full set is not known and only updates of cached operations are
    fast. ``operations`` holds full rows as this invocation last committed them.
    """

    maybe_existing: set[str] | None
    execution: Execution | None = None
    token: str = ""
    operations: dict[str, Operation] = field(default_factory=dict)
    fast_checkpoints: int = 0  # how many took the fast path (tests and diagnostics)

    @classmethod
    def for_invocation(cls, operation_ids: Iterable[str], *, complete: bool) -> CheckpointCache:
        return cls(set(operation_ids) if complete else None)

    def remember(self, execution: Execution, token: str, operations: Iterable[Operation]) -> None:
        """The state a checkpoint just committed: the next one may start from it."""
        self.execution = execution
        self.token = token
        for op in operations:
            self.operations[op.operation_id] = op
            if self.maybe_existing is not None:
                self.maybe_existing.add(op.operation_id)

    def forget(self, named_ids: Iterable[str] = ()) -> None:
        """Drop what may be stale; ``named_ids`` may exist now (a checkpoint's outcome is unknown)."""
        self.execution = None
        self.token = ""
        self.operations.clear()
        if self.maybe_existing is not None:
            self.maybe_existing.update(named_ids)


class NotFast(Exception):
    """This batch goes the locking way."""


def try_checkpoint(
    cache: CheckpointCache, arn: str, token: str, updates: Any, ts: TimestampFormat
) -> dict[str, Any] | None:
    """The checkpoint's response if the fast path applied it; None if the locking path must run
    (the caller then forgets what the cache held: something else changed the execution)."""
    if connections[DEFAULT_DB_ALIAS].vendor != "postgresql":
        return None
    try:
        plan = _plan(cache, arn, token, updates)
    except NotFast:
        return None
    response = checkpoint_response(plan.execution, plan.delta, ts)
    try:
        applied = _write(plan, response)
    except Exception:
        cache.forget(named_operation_ids(updates))  # the outcome is unknown: re-read first
        raise
    if not applied:
        return None
    cache.remember(plan.execution, response.get("CheckpointToken", ""), plan.changes.pending_operations())
    cache.fast_checkpoints += 1
    dispatch.send([dispatch.Changed(plan.execution.pk)])
    return response


@dataclass
class _Plan:
    before: Execution
    execution: Execution
    changes: ChangeSet
    delta: list[Operation]


def _plan(cache: CheckpointCache, arn: str, token: str, updates: Any) -> _Plan:
    before = cache.execution
    if before is None or not cache.token or token != cache.token or before.arn != arn:
        raise NotFast
    if not isinstance(updates, list) or not all(_is_fast_update(update) for update in updates):
        raise NotFast
    now = clock.now()
    if before.wake_at is not None and before.wake_at <= now:
        raise NotFast  # a due timer: the locking path completes it
    stored = _cached_operations(cache, updates)
    execution = _clone(before)
    changes = ChangeSet(execution, now)
    try:
        validate_batch(updates, {op_id: _stored(op) for op_id, op in stored.items()})
    except InvalidParameterValue as exc:
        raise NotFast from exc  # the locking path gives the answer from the database's state
    for update in updates:
        apply_update(changes, stored, update)
    if (
        changes.after_commit
        or changes.complete_parent_in_transaction
        or changes.extra_writes
        or changes.recompute_wake
    ):
        raise NotFast
    execution.seen_seq = execution.change_seq
    execution.checkpoint_seq += 1
    changes.update_wake_at()
    if _changed_beyond_counters(before, execution):
        raise NotFast
    delta = sorted(changes.touched_operations(), key=lambda op: op.position)
    return _Plan(before, execution, changes, delta)


def _changed_beyond_counters(before: Execution, after: Execution) -> bool:
    old, new = before.__dict__, after.__dict__
    return any(old.get(name) != new.get(name) for name in _other_fields())


@cache
def _other_fields() -> tuple[str, ...]:
    return tuple(name for name in rows(Execution).attnames if name not in COUNTERS)


def _clone(obj: M) -> M:
    """A shallow copy of a model instance (``copy.copy`` goes through pickling's protocol)."""
    clone = obj.__class__.__new__(obj.__class__)
    clone.__dict__.update(obj.__dict__)
    clone._state = copy.copy(obj._state)
    return clone


def _is_fast_update(update: Any) -> bool:
    return isinstance(update, dict) and update.get("Type") in FAST_TYPES


def _cached_operations(cache: CheckpointCache, updates: list[dict[str, Any]]) -> dict[str, Operation]:
    """Copies of the cached operations the batch names; NotFast if one may exist uncached."""
    stored: dict[str, Operation] = {}
    for op_id in named_operation_ids(updates):
        if op_id in cache.operations:
            stored[op_id] = _clone(cache.operations[op_id])
        elif cache.maybe_existing is None or op_id in cache.maybe_existing:
            raise NotFast
    return stored


def named_operation_ids(updates: Any) -> set[str]:
    """Every operation id a batch names, as its own Id or as a ParentId."""
    ids: set[str] = set()
    if isinstance(updates, list):
        for update in updates:
            if isinstance(update, dict):
                ids.update(
                    value for value in (update.get("Id"), update.get("ParentId")) if isinstance(value, str)
                )
    return ids


def _stored(op: Operation) -> StoredOp:
    return StoredOp(op.type, op.sub_type, op.name, op.parent_id, op.status)


def current_token(execution: Execution) -> str:
    return CheckpointToken(execution.pk, execution.invocation_count, execution.checkpoint_seq).encode()


def checkpoint_response(execution: Execution, delta: list[Operation], ts: TimestampFormat) -> dict[str, Any]:
    response: dict[str, Any] = {
        "NewExecutionState": {"Operations": [operation_to_wire(op, ts) for op in delta]}
    }
    # No token when closed (the SDK settles) or paused (the SDK suspends, docs/api.md).
    if execution.status == ExecutionStatus.RUNNING:
        response["CheckpointToken"] = current_token(execution)
    return response


# --- the statement ------------------------------------------------------------------------


def _write(plan: _Plan, response: dict[str, Any]) -> bool:
    """Run the guarded statement; whether the guard matched (and so everything was written).

    Should the connection drop before the answer arrives, the retry asks whether the
    execution's sequence moved to this checkpoint's (``db_retry.if_autocommit_lost``).
    """
    sql, params = _statement(plan)
    execution = plan.execution
    committed = partial(_advanced, execution.pk, execution.invocation_count, execution.checkpoint_seq)
    hooks: list[Callable[[], object]] = [partial(dispatch.send, [dispatch.Changed(execution.pk)])]
    with db_retry.if_autocommit_lost(response, committed, hooks):
        (count,) = execute_one(sql, params)
    return bool(count)


def _advanced(execution_id: int, invocation: int, seq: int) -> bool:
    return Execution.objects.filter(pk=execution_id, invocation_count=invocation, checkpoint_seq=seq).exists()


def _statement(plan: _Plan) -> tuple[str, list[Any]]:
    """The guarded statement and its parameters: the same text for every batch.

    Rows travel as three JSON arrays (created operations, modified operations, events)
    that ``jsonb_populate_recordset`` turns into rows of the tables' own types, so the
    statement has a fixed text and few parameters: psycopg converts it once and
    PostgreSQL runs it as one prepared statement, whatever the batch holds.
    """
    changes = plan.changes
    guard = _guard_values(plan)
    documents = [
        _json_rows(rows(Operation).insert_fields, changes.created.values()),
        _json_rows(_operation_update_fields(), changes.modified.values(), key=("operation_id",)),
        _json_rows(rows(HistoryEvent).insert_fields, changes.events),
    ]
    return _statement_text(), [*guard, *documents]


def _guard_values(plan: _Plan) -> list[Any]:
    after, before = plan.execution, plan.before
    return [
        *(getattr(after, name) for name in COUNTERS),
        before.pk,
        *(getattr(before, name) for name in GUARDED),
        str(ExecutionStatus.RUNNING),
        before.lease_owner,
    ]


def _json_rows(
    fields: Iterable[models.Field[Any, Any]], objs: Iterable[models.Model], key: tuple[str, ...] = ()
) -> str:
    names = [*key, *(field.attname for field in fields)]
    return json.dumps([{name: obj.__dict__[name] for name in names} for obj in objs], default=_json_value)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.isoformat()  # full precision, with its offset (the ORM's values are aware)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


@cache
def _statement_text() -> str:
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    execution, operations, events = rows(Execution), rows(Operation), rows(HistoryEvent)
    assignments = ", ".join(f"{quote(name)} = %s" for name in COUNTERS)
    conditions = " AND ".join(f"{quote(name)} = %s" for name in GUARDED)
    guard = (
        f"UPDATE {execution.table} SET {assignments} WHERE {quote('id')} = %s AND {conditions}"
        f" AND {quote('status')} = %s AND {quote('lease_owner')} = %s RETURNING {quote('id')} AS guard_id"
    )
    return (
        f"WITH guard AS ({guard}),"
        f" created AS ({_guarded_insert(operations)}),"
        f" modified AS ({_guarded_operation_update()}),"
        f" events AS ({_guarded_insert(events)})"
        " SELECT count(*) FROM guard"
    )


def _records(io: RowIO[Any]) -> str:
    """Rows of ``io``'s table type from a JSON array parameter (missing keys are NULL)."""
    return f"jsonb_populate_recordset(NULL::{io.table}, %s::jsonb) AS r"


def _guarded_insert(io: RowIO[Any]) -> str:
    """INSERT of the JSON array's rows that writes nothing unless the guard matched."""
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    columns = ", ".join(f"r.{quote(str(field.column))}" for field in io.insert_fields)
    return f"INSERT INTO {io.table} ({io.insert_columns}) SELECT {columns} FROM guard, {_records(io)}"


@cache
def _operation_update_fields() -> tuple[models.Field[Any, Any], ...]:
    io = rows(Operation)
    return tuple(io.by_attname[name] for name in OPERATION_UPDATE_FIELDS)


def _guarded_operation_update() -> str:
    io = rows(Operation)
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    assignments = ", ".join(
        f"{quote(str(field.column))} = r.{quote(str(field.column))}" for field in _operation_update_fields()
    )
    column = f"{io.table}.{{}}".format
    return (
        f"UPDATE {io.table} SET {assignments} FROM guard, {_records(io)}"
        f" WHERE {column(quote('execution_id'))} = guard.guard_id"
        f" AND {column(quote('operation_id'))} = r.{quote('operation_id')}"
    )
