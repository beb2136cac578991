"""Invocations: claiming one (lease, token lineage, first state page), renewing its
lease, recording how it ended and deciding what comes next, and taking over one whose
worker died."""

from __future__ import annotations

import datetime
import json
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from django.conf import settings
from django.db import connection, transaction

from executions.engine import clock
from executions.engine.changes import ChangeSet
from executions.engine.checkpoint import current_token
from executions.engine.db_retry import if_commit_lost, retry_transient
from executions.engine.rows import Query, rows, select_many
from executions.engine.tokens import encode_marker
from executions.engine.transitions import (
    close_execution,
    commit_changes,
    complete_due_timers,
    invocation_completed_event,
    lease_held,
    request_invocation,
)
from executions.engine.wire import TimestampFormat, as_datetime, operation_to_wire
from executions.models import (
    Execution,
    ExecutionStatus,
    Invocation,
    InvocationOutcome,
    Operation,
)

MAX_INVALID_PENDING = 3
MAX_CHILD_RESULT_BYTES = 1024 * 1024


# --- invocation lifecycle -----------------------------------------------------------------


@dataclass(frozen=True)
class InvocationInput:
    """Everything a worker needs to run the handler once."""

    execution_id: int
    arn: str
    invocation: int
    request_id: str
    token: str
    operations: list[dict[str, Any]]
    next_marker: str
    updated_operation_ids: list[str]
    handler: str
    function_id: int
    function_name: str
    function_version: int
    tenant_id: str
    # The execution row and every operation as this transaction committed them, when
    # the first page holds them all and is small: the worker's first checkpoint then
    # takes the fast path (executions.engine.checkpoint_fast) instead of re-reading them.
    state: tuple[Execution, list[Operation]] | None = None


def lock_execution_by_pk(execution_id: int) -> Execution | None:
    found = rows(Execution).select("id = %s", [execution_id], for_update=True)
    return found[0] if found else None


@retry_transient
def invocation_begin(
    execution_id: int, *, worker: str, ts: TimestampFormat = as_datetime
) -> InvocationInput | None:
    """Claim the execution's next invocation, or None if it needs none right now.

    Takes the lease, starts a new token lineage and builds the first page of
    state. Due timers are completed first, so the handler sees them.

    A retry after a COMMIT that went through but was never acknowledged (a lost
    connection) returns the invocation that COMMIT began (``if_commit_lost``: its
    record is there). A retry that finds the lease held otherwise returns None.
    """
    with transaction.atomic():
        execution = lock_execution_by_pk(execution_id)
        now = clock.now()
        if execution is None or not _invocation_due(execution, now):
            return None
        return _begin_locked(execution, now, worker, ts)


@retry_transient
def invocation_claim_next(*, worker: str, ts: TimestampFormat = as_datetime) -> InvocationInput | None:
    """Claim a due invocation of any execution; None if none is due.

    What a worker does between messages (``workers/invoker.py``, ``Invoker.drain``).
    One query finds nothing when nothing is due. Otherwise the execution is
    locked with ``SKIP LOCKED`` (one another worker is claiming, or a checkpoint or
    the scheduler holds, is passed over) and begun as ``invocation_begin`` would.

    Executions resuming (invoked before: a timer fired, a callback was answered, a
    retry came due) go first, oldest due first, then first invocations, oldest
    first (the order of the index execution_claim_idx): work in progress finishes
    before new work starts, so a backlog of new executions does not hold up the
    wake-ups of those already waiting.
    """
    now = clock.now()
    if not _any_due(now):
        return None
    with transaction.atomic():
        now = clock.now()
        due = rows(Execution).query(
            DUE_INVOCATION, [now, now], order_by=CLAIM_ORDER, limit=1, for_update=True
        )
        found = select_many([skip_locked(due)])[0]
        if not found or not _invocation_due(found[0], now):
            return None
        return _begin_locked(found[0], now, worker, ts)


# Executions whose next invocation is due and that no live lease holds (the partial
# indexes on invocation_due_at serve it: only executions that need an invocation are in them).
DUE_INVOCATION = (
    "needs_invocation AND status = 'RUNNING' AND invocation_due_at <= %s"
    " AND (lease_owner = '' OR lease_expires_at IS NULL OR lease_expires_at < %s)"
)
CLAIM_ORDER = "(invocation_count = 0), invocation_due_at"  # as execution_claim_idx has it


def _any_due(now: datetime.datetime) -> bool:
    """Whether some invocation is due: one plain statement, no transaction, no lock."""
    return bool(rows(Execution).select(DUE_INVOCATION, [now, now], limit=1))


def skip_locked(query: Query) -> Query:
    """``query`` (a FOR UPDATE select) passing over rows another transaction holds, where
    the database can (PostgreSQL); SQLite runs one writer at a time, so there is no lock to skip.
    """
    if " FOR UPDATE" in query.sql and connection.features.has_select_for_update_skip_locked:
        return query._replace(sql=query.sql + " SKIP LOCKED")
    return query


def _begin_locked(
    execution: Execution, now: datetime.datetime, worker: str, ts: TimestampFormat
) -> InvocationInput | None:
    """Begin the next invocation of the locked ``execution``, which is due."""
    changes = ChangeSet(execution, now)
    complete_due_timers(changes)
    if execution.is_terminal:
        commit_changes(changes)
        return None
    execution.invocation_count += 1
    execution.checkpoint_seq = 0
    execution.lease_owner = worker
    execution.lease_expires_at = now + datetime.timedelta(seconds=settings.DURABLE_LEASE_SECONDS)
    execution.needs_invocation = False
    execution.invocation_due_at = None
    execution.dispatched_at = None
    updated_ids = list(execution.updated_operation_ids)
    execution.updated_operation_ids = []
    execution.seen_seq = execution.change_seq
    request_id = str(uuid.uuid4())
    invocations = rows(Invocation)
    record = invocations.build(
        {
            "execution_id": execution.pk,
            "number": execution.invocation_count,
            "request_id": request_id,
            "worker": worker,
            "started_at": now,
        }
    )
    changes.extra_writes += invocations.insert_statements([record])
    commit_changes(
        changes,
        extra_fields=(
            "invocation_count",
            "checkpoint_seq",
            "lease_owner",
            "lease_expires_at",
            "dispatched_at",
        ),
    )
    operations, next_marker, page_rows = _first_page(execution, ts)
    begun = InvocationInput(
        execution_id=execution.pk,
        arn=execution.arn,
        invocation=execution.invocation_count,
        request_id=request_id,
        token=current_token(execution),
        operations=operations,
        next_marker=next_marker,
        updated_operation_ids=updated_ids,
        handler=execution.handler,
        function_id=execution.function_id,
        function_name=function_name_of(execution.arn),
        function_version=execution.function_version,
        tenant_id=execution.tenant_id,
        state=_state_to_share(execution, page_rows, next_marker),
    )
    if_commit_lost(begun, partial(_invocation_recorded, execution.pk, request_id))
    return begun


def _invocation_recorded(execution_id: int, request_id: str) -> bool:
    return Invocation.objects.filter(execution_id=execution_id, request_id=request_id).exists()


def function_name_of(arn: str) -> str:
    """``arn:aws:lambda:R:A:function:NAME:VERSION/durable-execution/...`` -> NAME."""
    return arn.split(":function:", 1)[1].split(":", 1)[0]


def _invocation_due(execution: Execution, now: datetime.datetime) -> bool:
    if execution.status != ExecutionStatus.RUNNING or not execution.needs_invocation:
        return False
    if execution.invocation_due_at and execution.invocation_due_at > now:
        return False
    return not lease_held(execution, now)


def _first_page(
    execution: Execution, ts: TimestampFormat
) -> tuple[list[dict[str, Any]], str, list[Operation]]:
    """The invocation input's operations, paged by count and by bytes (docs/api.md).

    Also the page's rows. The marker names the page's last position: the next page
    starts after it (``checkpoint.get_state``), an index range, not an OFFSET.
    """
    limit = settings.DURABLE_STATE_PAGE_SIZE
    budget = settings.DURABLE_INVOCATION_PAGE_BYTES
    page: list[dict[str, Any]] = []
    page_rows: list[Operation] = []
    for op in rows(Operation).select(
        "execution_id = %s", [execution.pk], order_by="position", limit=limit + 1
    ):
        size = 256 + sum(len(v or "") for v in (op.input_payload, op.result))
        if len(page) == limit or (page and size > budget):
            return page, encode_marker(page_rows[-1].position), page_rows
        budget -= size
        page.append(operation_to_wire(op, ts))
        page_rows.append(op)
    return page, "", page_rows


# Above this much payload the rows are not sent along: the first checkpoint reads them.
MAX_SHARED_STATE_BYTES = 256 * 1024


def _state_to_share(
    execution: Execution, page_rows: list[Operation], next_marker: str
) -> tuple[Execution, list[Operation]] | None:
    if next_marker:
        return None
    size = len(execution.input_payload or "") + sum(
        len(op.input_payload or "") + len(op.result or "") for op in page_rows
    )
    return (execution, page_rows) if size <= MAX_SHARED_STATE_BYTES else None


@retry_transient
def lease_renew(execution_id: int, invocation: int, worker: str) -> bool:
    """Extend a running invocation's lease; False if it was lost. One UPDATE: safe to repeat."""
    expires = clock.now() + datetime.timedelta(seconds=settings.DURABLE_LEASE_SECONDS)
    return bool(
        Execution.objects.filter(pk=execution_id, invocation_count=invocation, lease_owner=worker).update(
            lease_expires_at=expires
        )
    )


@retry_transient
def invocation_finish(
    execution_id: int,
    invocation: int,
    *,
    output: Any = None,
    raised: dict[str, Any] | None = None,
    outcome: InvocationOutcome | None = None,
    sandbox_pid: int | None = None,
    memory_used_mb: int | None = None,
) -> bool:
    """Record what one handler run returned (docs/api.md) and decide what comes next.

    ``output`` is the handler's return value; ``raised`` the error object when
    the handler raised instead, or when its sandbox timed out, crashed or ran
    out of memory (``outcome`` says which); all of those are retried with
    backoff. Finishing an invocation twice (a retried commit) changes nothing.

    Returns whether the execution's next invocation is due right now (something
    happened while the handler ran, or it asked for one): the worker then begins
    it at once, and no hint was sent for it. False in every other case, including
    a finish that was already recorded or whose lease was taken over.
    """
    with transaction.atomic():
        locked, records = select_many(
            [
                rows(Execution).query("id = %s", [execution_id], for_update=True),
                rows(Invocation).query("execution_id = %s AND number = %s", [execution_id, invocation]),
            ]
        )
        if not locked:
            return False
        execution = locked[0]
        record = records[0] if records else None
        if record is not None and record.ended_at is not None:
            return False  # already recorded (taken over at lease expiry, or a retried commit)
        changes = ChangeSet(execution)
        current = execution.invocation_count == invocation and bool(execution.lease_owner)
        error = raised or _output_error(output)
        if record is not None:
            record.ended_at = changes.now
            record.outcome = outcome or (InvocationOutcome.ERROR if raised else _output_status(output))
            record.error = error
            record.sandbox_pid = sandbox_pid
            record.memory_used_mb = memory_used_mb
            changes.extra_writes += rows(Invocation).update_statements(
                [record], ["ended_at", "outcome", "error", "sandbox_pid", "memory_used_mb"]
            )
            invocation_completed_event(
                changes, started_at=record.started_at, request_id=record.request_id, error=error
            )
        if not current:  # a zombie finishing after its lease was taken over
            commit_changes(changes)
            return False
        if not execution.is_terminal:
            # Still under this worker's lease: a re-invocation asked for here sends no
            # hint (request_invocation), since this worker runs it itself when it is due now.
            _apply_outcome(changes, output, raised)
        execution.lease_owner = ""
        execution.lease_expires_at = None
        commit_changes(
            changes,
            extra_fields=("lease_owner", "lease_expires_at", "consecutive_failures", "invalid_pending_count"),
        )
        return _invocation_due(execution, changes.now)


def _output_status(output: Any) -> str:
    if isinstance(output, dict) and isinstance(output.get("Status"), str):
        return cast(str, output["Status"])
    return "INVALID"


def _output_error(output: Any) -> dict[str, Any] | None:
    if isinstance(output, dict) and isinstance(output.get("Error"), dict):
        return cast(dict[str, Any], output["Error"])
    return None


def _apply_outcome(changes: ChangeSet, output: Any, raised: dict[str, Any] | None) -> None:
    execution = changes.execution
    if raised is not None:
        _retry_or_fail(changes, raised)
        return
    execution.consecutive_failures = 0
    status = _output_status(output)
    if status == "SUCCEEDED" and "Error" not in output:
        _succeed(changes, output.get("Result"))
    elif status == "FAILED" and "Result" not in output:
        close_execution(changes, ExecutionStatus.FAILED, error=output.get("Error") or {})
    elif status == "PENDING":
        _after_pending(changes)
    else:
        close_execution(
            changes,
            ExecutionStatus.FAILED,
            error={
                "ErrorType": "InvalidParameterValueException",
                "ErrorMessage": f"Invalid invocation output: {str(output)[:500]}",
            },
        )


def _succeed(changes: ChangeSet, result: Any) -> None:
    result = result if isinstance(result, str) else json.dumps(result)
    if changes.execution.parent_id and len(result.encode()) > MAX_CHILD_RESULT_BYTES:
        close_execution(
            changes,
            ExecutionStatus.FAILED,
            error={"ErrorMessage": "Child execution output exceeds 1 MiB"},
        )
        return
    close_execution(changes, ExecutionStatus.SUCCEEDED, result=result)


def _retry_or_fail(changes: ChangeSet, error: dict[str, Any]) -> None:
    execution = changes.execution
    execution.consecutive_failures += 1
    if execution.consecutive_failures >= settings.DURABLE_INVOCATION_MAX_ATTEMPTS:
        close_execution(changes, ExecutionStatus.FAILED, error=error)
        return
    delay = datetime.timedelta(seconds=settings.DURABLE_INVOCATION_RETRY_DELAY_SECONDS)
    request_invocation(changes, at=changes.now + delay)


def _after_pending(changes: ChangeSet) -> None:
    """PENDING: re-invoke only for changes the handler has not seen (docs/api.md)."""
    execution = changes.execution
    if execution.status == ExecutionStatus.PAUSED:
        execution.needs_invocation = True  # held back until resume
        return
    if execution.change_seq > execution.seen_seq:
        execution.invalid_pending_count = 0
        request_invocation(changes)
        return
    if _has_pending_work(execution):
        execution.invalid_pending_count = 0
        return
    # Nothing can wake it: re-invoke a few times, then fail (as the reference does).
    execution.invalid_pending_count += 1
    if execution.invalid_pending_count >= MAX_INVALID_PENDING:
        close_execution(
            changes,
            ExecutionStatus.FAILED,
            error={
                "ErrorType": "InvalidParameterValueException",
                "ErrorMessage": "Handler returned PENDING with no pending operations",
            },
        )
    else:
        request_invocation(changes)


def _has_pending_work(execution: Execution) -> bool:
    """Something that will wake the execution later: a wait, callback, invoke or retry."""
    waiting = rows(Operation).select(
        "execution_id = %s AND ((type IN ('WAIT', 'CALLBACK', 'CHAINED_INVOKE') AND status = 'STARTED')"
        " OR (type = 'STEP' AND status IN ('PENDING', 'READY')))",
        [execution.pk],
        limit=1,
    )
    return bool(waiting)


@retry_transient
def invocation_expire(execution_id: int) -> bool:
    """An invocation whose lease ran out died: count it as a raised invocation.

    Run again after its COMMIT went through, it finds no lease and does nothing.
    """
    with transaction.atomic():
        execution = Execution.objects.select_for_update().filter(pk=execution_id).first()
        now = clock.now()
        if (
            execution is None
            or not execution.lease_owner
            or execution.lease_expires_at is None
            or execution.lease_expires_at > now
        ):
            return False
        changes = ChangeSet(execution, now)
        owner = execution.lease_owner
        execution.lease_owner = ""
        execution.lease_expires_at = None
        # The whole worker died with its sandbox: recorded as Lambda records a runtime exit.
        error = {
            "ErrorType": "Runtime.ExitError",
            "ErrorMessage": f"Worker {owner} stopped responding; its lease expired",
        }
        record = Invocation.objects.filter(
            execution=execution, number=execution.invocation_count, ended_at__isnull=True
        ).first()
        if record is not None:
            record.ended_at, record.outcome, record.error = now, InvocationOutcome.LOST, error
            record.save(update_fields=["ended_at", "outcome", "error"])
            invocation_completed_event(
                changes, started_at=record.started_at, request_id=record.request_id, error=error
            )
        if execution.status == ExecutionStatus.PAUSED:
            execution.needs_invocation = True
        elif not execution.is_terminal:
            execution.consecutive_failures += 1
            if execution.consecutive_failures >= settings.DURABLE_INVOCATION_MAX_ATTEMPTS:
                close_execution(changes, ExecutionStatus.FAILED, error=error)
            else:
                request_invocation(changes)
        commit_changes(changes, extra_fields=("lease_owner", "lease_expires_at", "consecutive_failures"))
        return True


def invocation_mark_dispatched(execution_ids: list[int]) -> None:
    Execution.objects.filter(pk__in=execution_ids).update(dispatched_at=clock.now())
