"""Timers: completing due waits, retries and callback timeouts, and the execution timeout.

``timers_fire_due`` fires one execution's timers; the scheduler uses
``timers_fire_batch``, which fires those of up to a batch of executions in one
transaction with a bounded number of statements, whatever the batch size:

1. lock the executions whose ``wake_at`` passed, oldest first, ``SKIP LOCKED``
   (one a checkpoint, a worker's claim or another scheduler holds completes its
   own timers: ``complete_due_timers`` runs in each of those);
2. read their due operations and the next timer of each one's other operations
   (two queries, whatever the batch size);
3. fire them as ``complete_due_timers`` does (the same ``fire_operation_timer``,
   so the same history events, ``touched_seq``/``change_seq`` the SDK's next
   delta shows, and ``updated_operation_ids``), and ask for an invocation;
4. write every change in three statements (operations, history events,
   executions), pipelined into one round trip on PostgreSQL; SQLite, where the
   embedded server runs one writer at a time, gets a statement per row.

Executions whose own timeout passed take the one-at-a-time path afterwards, each
in a transaction of its own: closing one may notify (lock) its parent. A timer fires once: the fired
operation's ``timer_at`` is cleared and the execution's ``wake_at`` moves on in
the same transaction, so running it again (or another scheduler) finds nothing.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, TypeVar, cast

from django.db import connection, models, transaction

from executions.engine import effects as dispatch
from executions.engine.changes import ChangeSet
from executions.engine.db_retry import retry_transient
from executions.engine.invocations import skip_locked
from executions.engine.rows import Statement, execute, rows, select_many
from executions.engine.transitions import (
    TIMER_EXECUTION_FIELDS,
    TIMER_OPERATION_FIELDS,
    commit_changes,
    complete_due_timers,
    fire_due_operations,
    request_invocation,
)
from executions.models import Execution, HistoryEvent, Operation
from executions.vocabulary import ACTIVE_EXECUTION_STATUSES

M = TypeVar("M", bound=models.Model)

# Rows per write statement: far below PostgreSQL's 65,535 parameters and SQLite's 32,766.
ROWS_PER_STATEMENT = 500


@retry_transient
def timers_fire_due(execution_id: int) -> bool:
    """Complete the execution's due timers and ask for an invocation if any fired.

    Skips an execution another process holds locked: that holder (a checkpoint
    or another scheduler) completes the same timers itself. Timers that fired
    are cleared, so running it again finds nothing due.
    """
    with transaction.atomic():
        execution = Execution.objects.select_for_update(skip_locked=True).filter(pk=execution_id).first()
        if execution is None:
            return False
        return _fire_one(ChangeSet(execution))


def _fire_one(changes: ChangeSet) -> bool:
    fired = complete_due_timers(changes)
    if fired and not changes.execution.is_terminal:
        request_invocation(changes)
    commit_changes(changes)
    return fired


def timers_fire_batch(now: datetime.datetime, limit: int) -> tuple[int, int]:
    """Fire the due timers of up to ``limit`` executions (see the module).

    Returns (executions looked at, executions whose timers fired): fewer looked at
    than ``limit`` means none was left due (or the rest were locked).
    """
    looked_at, fired = _fire_batch(now, limit)
    # Executions past their own timeout, each in a transaction of its own: closing one
    # may lock its parent, and a batch holding parents and children at once could
    # then wait on another batch doing the same the other way round.
    for execution_id in _timed_out(now, limit):
        looked_at += 1
        fired += timers_fire_due(execution_id)
    return looked_at, fired


@retry_transient
def _fire_batch(now: datetime.datetime, limit: int) -> tuple[int, int]:
    with transaction.atomic():
        query = rows(Execution).query(
            f"wake_at <= %s AND status IN ({_OPEN}) AND (timeout_at IS NULL OR timeout_at > %s)",
            [now, now],
            order_by="wake_at",
            limit=limit,
            for_update=True,
        )
        locked = select_many([skip_locked(query)])[0]
        if not locked:
            return 0, 0
        return len(locked), _fire_many([ChangeSet(execution, now) for execution in locked])


@retry_transient
def _timed_out(now: datetime.datetime, limit: int) -> list[int]:
    table = connection.ops.quote_name(Execution._meta.db_table)
    found = _fetch(
        f"SELECT id FROM {table} WHERE wake_at <= %s AND status IN ({_OPEN}) AND timeout_at <= %s"
        f" ORDER BY wake_at LIMIT {int(limit)}",
        [now, now],
    )
    return [execution_id for (execution_id,) in found]


def _fire_many(batch: list[ChangeSet]) -> int:
    now = batch[0].now
    ids = [changes.execution.pk for changes in batch]
    due, later = _due_operations(ids, now), _next_timers(ids, now)
    fired = 0
    for changes in batch:
        execution = changes.execution
        if fire_due_operations(changes, due.get(execution.pk, [])):
            fired += 1
            request_invocation(changes)
        rearmed = [op.timer_at for op in changes.modified.values() if op.timer_at is not None]
        pending = [t for t in (execution.timeout_at, later.get(execution.pk), *rearmed) if t is not None]
        execution.wake_at = min(pending) if pending else None
    operations = [op for changes in batch for op in changes.modified.values()]
    execute(
        [
            *_bulk_update(Operation, operations, TIMER_OPERATION_FIELDS),
            *_chunked_insert(HistoryEvent, [event for changes in batch for event in changes.events]),
            *_bulk_update(Execution, [changes.execution for changes in batch], TIMER_EXECUTION_FIELDS),
        ]
    )
    effects: list[dispatch.Effect] = []
    for changes in batch:
        effects += [dispatch.Changed(changes.execution.pk), *changes.after_commit]
    dispatch.after_commit(effects)
    return fired


def _due_operations(execution_ids: list[int], now: datetime.datetime) -> dict[int, list[Operation]]:
    query = rows(Operation).query(
        f"execution_id IN ({_placeholders(execution_ids)}) AND timer_at <= %s",
        [*execution_ids, now],
        order_by="execution_id, position",
    )
    due: dict[int, list[Operation]] = defaultdict(list)
    for op in select_many([query])[0]:
        due[op.execution_id].append(op)
    return due


def _next_timers(execution_ids: list[int], now: datetime.datetime) -> dict[int, datetime.datetime]:
    """Each execution's earliest timer still to come: its ``wake_at`` once the due ones fired."""
    table = connection.ops.quote_name(Operation._meta.db_table)
    found = _fetch(
        f"SELECT execution_id, MIN(timer_at) FROM {table}"
        f" WHERE execution_id IN ({_placeholders(execution_ids)}) AND timer_at > %s GROUP BY execution_id",
        [*execution_ids, now],
    )
    return {execution_id: _as_datetime(earliest) for execution_id, earliest in found}


@retry_transient
def timers_next_due() -> datetime.datetime | None:
    """The earliest moment a timer of an open execution comes due (read from the wake_at index)."""
    table = connection.ops.quote_name(Execution._meta.db_table)
    found = _fetch(
        f"SELECT wake_at FROM {table} WHERE wake_at IS NOT NULL AND status IN ({_OPEN})"
        " ORDER BY wake_at LIMIT 1",
        [],
    )
    return _as_datetime(found[0][0]) if found else None


_OPEN = ", ".join(f"'{status}'" for status in ACTIVE_EXECUTION_STATUSES)


def _fetch(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    # A plain cursor: the ORM took longer to compile these than the database to run them.
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def _as_datetime(value: Any) -> datetime.datetime:
    """A timestamp as the ORM would return it (SQLite hands back text)."""
    field = Execution._meta.get_field("wake_at")
    for converter in connection.ops.get_db_converters(field.get_col(Execution._meta.db_table)):
        value = converter(value, field, connection)
    return cast(datetime.datetime, value)


def _placeholders(values: Sequence[Any]) -> str:
    return ", ".join(["%s"] * len(values))


def _chunked_insert(model: type[M], objs: list[M]) -> list[Statement]:
    io = rows(model)
    return [
        statement
        for start in range(0, len(objs), ROWS_PER_STATEMENT)
        for statement in io.insert_statements(objs[start : start + ROWS_PER_STATEMENT])
    ]


def _bulk_update(model: type[M], objs: list[M], attnames: Sequence[str]) -> list[Statement]:
    """UPDATE ``attnames`` of ``objs``: on PostgreSQL one statement per chunk of rows,
    ``UPDATE ... FROM (VALUES ...)``; elsewhere one statement per row."""
    io = rows(model)
    per_row = io.update_statements(objs, attnames)  # the values, prepared as the hot path does
    if connection.vendor != "postgresql" or len(per_row) <= 1:
        return per_row
    meta = model._meta
    quote = connection.ops.quote_name
    by_attname = {field.attname: field for field in meta.concrete_fields}
    fields = [by_attname[name] for name in (meta.pk.attname, *attnames)]
    columns = [quote(cast(str, field.column)) for field in fields]
    row = "(" + ", ".join(f"CAST(%s AS {field.db_type(connection)})" for field in fields) + ")"
    assignments = ", ".join(f"{column} = v.{column}" for column in columns[1:])
    statements = []
    for start in range(0, len(per_row), ROWS_PER_STATEMENT):
        chunk = per_row[start : start + ROWS_PER_STATEMENT]
        sql = (
            f"UPDATE {quote(meta.db_table)} SET {assignments} FROM (VALUES {', '.join([row] * len(chunk))})"
            f" AS v({', '.join(columns)}) WHERE {quote(meta.db_table)}.{columns[0]} = v.{columns[0]}"
        )
        # update_statements' parameters are the new values, then the primary key.
        statements.append((sql, [value for _, params in chunk for value in (params[-1], *params[:-1])]))
    return statements
