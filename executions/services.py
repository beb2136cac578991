"""The durable service's transitions: the only code that changes execution state.

Views, API views, tasks, the scheduler and the CLI call these functions; none
of them sets a status itself. Each function runs in one transaction on the
locked execution row and sends its wake-up hints after commit.
"""

from __future__ import annotations

import datetime
import json
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction

from executions.engine import clock
from executions.engine.callback_ids import hash_callback_id
from executions.engine.changes import ChangeSet, wrap_payload
from executions.engine.checkpoint import checkpoint, current_token, get_state, lock_execution
from executions.engine.db_retry import if_commit_lost, retry_transient
from executions.engine.errors import (
    CallbackTimeout,
    InvalidParameterValue,
    ResourceConflict,
    ResourceNotFound,
    ServiceError,
)
from executions.engine.functions import function_register, function_resolve, limits_for_version
from executions.engine.rows import rows, select_many
from executions.engine.starts import StartResult, execution_start
from executions.engine.transitions import (
    close_execution,
    commit_changes,
    complete_async_operation,
    complete_chained_invoke,
    complete_due_timers,
    invocation_completed_event,
    next_callback_deadline,
    request_invocation,
)
from executions.engine.wire import TimestampFormat, as_datetime, operation_to_wire
from executions.models import (
    DEFAULT_FUNCTION_TIMEOUT_SECONDS,
    TERMINAL_EXECUTION_STATUSES,
    Execution,
    ExecutionStatus,
    Function,
    Invocation,
    InvocationOutcome,
    Operation,
)

__all__ = [
    "StartResult",
    "callback_fail",
    "callback_heartbeat",
    "callback_succeed",
    "checkpoint",
    "execution_delete",
    "execution_pause",
    "execution_redrive",
    "execution_redrive_planned",
    "execution_rerun",
    "execution_resume",
    "execution_start",
    "execution_stop",
    "executions_purge_expired",
    "function_register",
    "get_state",
    "invocation_begin",
    "invocation_finish",
    "lease_renew",
    "plain_invoke_claim",
    "plain_invoke_complete",
    "plain_invoke_recover",
    "redrive_preview",
    "timers_fire_due",
]

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
        operations, next_marker = _first_page(execution, ts)
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
    in_flight = execution.lease_owner and execution.lease_expires_at and execution.lease_expires_at > now
    return not in_flight


def _first_page(execution: Execution, ts: TimestampFormat) -> tuple[list[dict[str, Any]], str]:
    """The invocation input's operations, paged by count and by bytes (CONTRACT.md §2.6)."""
    from executions.engine.tokens import encode_marker

    limit = settings.DURABLE_STATE_PAGE_SIZE
    budget = settings.DURABLE_INVOCATION_PAGE_BYTES
    page: list[dict[str, Any]] = []
    for op in rows(Operation).select(
        "execution_id = %s", [execution.pk], order_by="position", limit=limit + 1
    ):
        size = 256 + sum(len(v or "") for v in (op.input_payload, op.result))
        if len(page) == limit or (page and size > budget):
            return page, encode_marker(len(page))
        budget -= size
        page.append(operation_to_wire(op, ts))
    return page, ""


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
) -> None:
    """Record what one handler run returned (CONTRACT.md §1.3) and decide what comes next.

    ``output`` is the handler's return value; ``raised`` the error object when
    the handler raised instead, or when its sandbox timed out, crashed or ran
    out of memory (``outcome`` says which); all of those are retried with
    backoff. Finishing an invocation twice (a retried commit) changes nothing.
    """
    with transaction.atomic():
        locked, records = select_many(
            [
                rows(Execution).query("id = %s", [execution_id], for_update=True),
                rows(Invocation).query("execution_id = %s AND number = %s", [execution_id, invocation]),
            ]
        )
        if not locked:
            return
        execution = locked[0]
        record = records[0] if records else None
        if record is not None and record.ended_at is not None:
            return  # already recorded (taken over at lease expiry, or a retried commit)
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
            return
        execution.lease_owner = ""
        execution.lease_expires_at = None
        if not execution.is_terminal:
            _apply_outcome(changes, output, raised)
        commit_changes(
            changes,
            extra_fields=("lease_owner", "lease_expires_at", "consecutive_failures", "invalid_pending_count"),
        )


def _output_status(output: Any) -> str:
    if isinstance(output, dict) and isinstance(output.get("Status"), str):
        return output["Status"]
    return "INVALID"


def _output_error(output: Any) -> dict[str, Any] | None:
    if isinstance(output, dict) and isinstance(output.get("Error"), dict):
        return output["Error"]
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
    """PENDING: re-invoke only for changes the handler has not seen (CONTRACT.md §2.3)."""
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


# --- timers -------------------------------------------------------------------------------


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
        changes = ChangeSet(execution)
        fired = complete_due_timers(changes)
        if fired and not execution.is_terminal:
            request_invocation(changes)
        commit_changes(changes)
        return fired


# --- callbacks ----------------------------------------------------------------------------


def _lock_callback(callback_id: str) -> tuple[ChangeSet, Operation]:
    if not isinstance(callback_id, str) or not callback_id:
        raise InvalidParameterValue("CallbackId is required")
    op = Operation.objects.filter(callback_id_hash=hash_callback_id(callback_id)).first()
    if op is None:
        raise ResourceNotFound("Callback not found")
    execution = Execution.objects.select_for_update().get(pk=op.execution_id)
    op.refresh_from_db()
    changes = ChangeSet(execution)
    complete_due_timers(changes)  # a callback past its timeout cannot be completed
    op = changes.modified.get(op.operation_id, op)
    if op.status != "STARTED" or execution.is_terminal:
        raise CallbackTimeout()
    return changes, op


@retry_transient
def callback_succeed(callback_id: str, result: str | bytes | None) -> None:
    """SendDurableExecutionCallbackSuccess: the raw result becomes the callback's Result.

    An empty or absent Result (one request on the wire: boto3 sends an empty body for
    both) completes the callback with no result at all, so the handler's
    ``callback.result()`` returns None rather than "", as at the service.
    """
    if isinstance(result, bytes):
        try:
            result = result.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidParameterValue("Callback result must be UTF-8") from exc
    if result is not None and len(result.encode()) > 1024 * 1024:
        raise InvalidParameterValue("Callback result exceeds 1 MiB")
    with transaction.atomic():
        changes, op = _lock_callback(callback_id)
        complete_async_operation(
            changes, op, status="SUCCEEDED", event_prefix="Callback", result=result or None
        )
        commit_changes(changes)


@retry_transient
def callback_fail(callback_id: str, error: dict[str, Any] | None) -> None:
    """SendDurableExecutionCallbackFailure: absent error fields stay absent.

    Callbacks are single use: a retry after a COMMIT that went through raises
    CallbackTimeout although the completion was recorded (as callback_succeed).
    """
    from executions.engine.validation import _validate_error_object

    if error is not None:
        _validate_error_object(error)
    with transaction.atomic():
        changes, op = _lock_callback(callback_id)
        complete_async_operation(changes, op, status="FAILED", event_prefix="Callback", error=error or {})
        commit_changes(changes)


@retry_transient
def callback_heartbeat(callback_id: str) -> None:
    """Reset only the heartbeat deadline; no state change, no invocation. Safe to repeat."""
    with transaction.atomic():
        changes, op = _lock_callback(callback_id)
        if op.callback_heartbeat_timeout:
            op.callback_heartbeat_at = changes.now + datetime.timedelta(seconds=op.callback_heartbeat_timeout)
            changes.set_timer(op, next_callback_deadline(op))
            changes.recompute_wake = True
            changes.save_quietly(op)
        commit_changes(changes)


# --- plain chained invokes ------------------------------------------------------------------
#
# A plain (non-durable) target is called at most once: a worker claims the call
# (compare-and-set on ``invoke_dispatch_pending``), calls the target, and records
# the outcome. If that worker dies after its claim, nobody can tell whether the
# target ran, so the call is not made again: once the claim expires (the
# target's Timeout plus a lease), the scheduler fails the operation with
# Runtime.ExitError and the handler sees an InvokeError it can handle.

PLAIN_CALL_LOST_MESSAGE = (
    "The worker calling {function} stopped before recording the outcome; the call may or may not have run"
)


@retry_transient
def plain_invoke_claim(execution_id: int, operation_id: str) -> Operation | None:
    """Claim a plain target's single call, or None if it was claimed already.

    The claim expires after the target's Timeout plus ``DURABLE_LEASE_SECONDS``;
    ``plain_invoke_recover`` ends the operation after that. A retry after a COMMIT
    that went through finds the call claimed and returns None: the target is not
    called, and the operation fails at claim expiry (at most once, never twice).
    """
    with transaction.atomic():
        op = Operation.objects.filter(
            execution_id=execution_id,
            operation_id=operation_id,
            invoke_dispatch_pending=True,
            status="STARTED",
        ).first()
        if op is None:
            return None
        seconds = _plain_call_seconds(op.invoke_function_name) + settings.DURABLE_LEASE_SECONDS
        expires = clock.now() + datetime.timedelta(seconds=seconds)
        claimed = Operation.objects.filter(pk=op.pk, invoke_dispatch_pending=True, status="STARTED").update(
            invoke_dispatch_pending=False, invoke_claim_expires_at=expires
        )
        if not claimed:  # another worker claimed it between the read and the update
            return None
        op.invoke_dispatch_pending = False
        op.invoke_claim_expires_at = expires
        return op


def _plain_call_seconds(reference: str) -> int:
    """The target's Timeout: how long a live worker may take to call it."""
    try:
        function, _qualifier = function_resolve(reference)
    except ServiceError:  # gone since the invoke started: the worker fails fast anyway
        return DEFAULT_FUNCTION_TIMEOUT_SECONDS
    return limits_for_version(function.pk, function.version).timeout_seconds


@retry_transient
def plain_invoke_complete(
    execution_id: int,
    operation_id: str,
    *,
    result: str | None = None,
    error: dict[str, Any] | None = None,
) -> None:
    """Record a plain target's outcome on the caller's CHAINED_INVOKE operation.

    A no-op once the operation is no longer STARTED: a retry after a COMMIT that
    went through, or a claim that expired and was recovered (the operation keeps
    its Runtime.ExitError; this late outcome is dropped).
    """
    with transaction.atomic():
        execution = Execution.objects.select_for_update().filter(pk=execution_id).first()
        if execution is None or execution.is_terminal:
            return
        op = Operation.objects.filter(execution=execution, operation_id=operation_id).first()
        if op is None or op.status != "STARTED":
            return
        changes = ChangeSet(execution)
        if error is None and result is not None and len(result.encode()) > MAX_CHILD_RESULT_BYTES:
            error = {"ErrorMessage": "Chained invoke output exceeds 1 MiB"}
        if error is not None:
            complete_chained_invoke(changes, op, status="FAILED", error=error)
        else:
            complete_chained_invoke(changes, op, status="SUCCEEDED", result=result)
        commit_changes(changes)


@retry_transient
def plain_invoke_recover(execution_id: int, operation_id: str) -> bool:
    """End a claimed plain call whose worker died: FAILED with Runtime.ExitError.

    Does nothing (returns False) unless the claim has expired and no outcome was
    recorded; so running it again, or after the worker's own late outcome, is harmless.
    The target is not called again: whether it ran is unknown, and calling it twice
    would break the at-most-once promise a plain call makes.
    """
    with transaction.atomic():
        execution = lock_execution_by_pk(execution_id)
        if execution is None or execution.is_terminal:
            return False
        op = Operation.objects.filter(execution=execution, operation_id=operation_id).first()
        changes = ChangeSet(execution)
        if op is None or not _claim_expired(op, changes.now):
            return False
        error = {
            "ErrorType": "Runtime.ExitError",
            "ErrorMessage": PLAIN_CALL_LOST_MESSAGE.format(function=op.invoke_function_name),
        }
        complete_chained_invoke(changes, op, status="FAILED", error=error)
        commit_changes(changes)
        return True


def _claim_expired(op: Operation, now: datetime.datetime) -> bool:
    return (
        op.type == "CHAINED_INVOKE"
        and op.status == "STARTED"
        and not op.invoke_dispatch_pending
        and op.invoke_claim_expires_at is not None
        and op.invoke_claim_expires_at <= now
    )


# --- operator actions -----------------------------------------------------------------------


def execution_stop(arn: str, error: dict[str, Any] | None = None) -> datetime.datetime:
    """StopDurableExecution: close as STOPPED; idempotent on a stopped execution."""
    if error is not None:
        from executions.engine.validation import _validate_error_object

        _validate_error_object(error)
    with transaction.atomic():
        execution = lock_execution(arn)
        if execution.status == ExecutionStatus.STOPPED:
            return execution.ended_at
        if execution.is_terminal:
            raise ResourceConflict(f"Execution is already {execution.status}")
        changes = ChangeSet(execution)
        stop_error = error or {"ErrorMessage": "Execution stopped by user request"}
        close_execution(changes, ExecutionStatus.STOPPED, error=stop_error)
        commit_changes(changes)
        return changes.now


def execution_pause(arn: str, *, reason: str | None = None, timeout_paused: bool = False) -> None:
    """PauseDurableExecution: no invocations while paused; timers and callbacks go on."""
    with transaction.atomic():
        execution = lock_execution(arn)
        if execution.status == ExecutionStatus.PAUSED:
            return
        if execution.status != ExecutionStatus.RUNNING:
            raise ResourceConflict(f"Cannot pause an execution that is {execution.status}")
        changes = ChangeSet(execution)
        execution.status = ExecutionStatus.PAUSED
        execution.pause_details = {
            "PauseRequestTimestamp": changes.now.timestamp(),
            "Reason": reason,
            "ExecutionTimeoutPaused": timeout_paused,
        }
        changes.event(
            "ExecutionPaused",
            None,
            PauseRequestTimestamp=changes.now.timestamp(),
            Reason=wrap_payload(reason) if reason else None,
            ExecutionTimeoutPaused=timeout_paused,
        )
        commit_changes(changes, extra_fields=("pause_details",))


def execution_resume(arn: str, *, reason: str | None = None) -> None:
    """ResumeDurableExecution: invoke if an invocation was held back or interrupted."""
    with transaction.atomic():
        execution = lock_execution(arn)
        if execution.status == ExecutionStatus.RUNNING:
            return
        if execution.status != ExecutionStatus.PAUSED:
            raise ResourceConflict(f"Cannot resume an execution that is {execution.status}")
        changes = ChangeSet(execution)
        execution.status = ExecutionStatus.RUNNING
        details = execution.pause_details or {}
        if details.get("ExecutionTimeoutPaused") and execution.timeout_at:
            paused_for = changes.now.timestamp() - details["PauseRequestTimestamp"]
            execution.timeout_at += datetime.timedelta(seconds=paused_for)
            changes.recompute_wake = True
        execution.pause_details = None
        changes.event(
            "ExecutionResumed",
            None,
            ResumeRequestTimestamp=changes.now.timestamp(),
            Reason=wrap_payload(reason) if reason else None,
        )
        if execution.needs_invocation or execution.change_seq > execution.seen_seq:
            request_invocation(changes)
        commit_changes(changes, extra_fields=("pause_details", "timeout_at"))


def execution_delete(arn: str) -> datetime.datetime:
    """DeleteDurableExecution: only terminal executions; the rows go at once."""
    with transaction.atomic():
        execution = lock_execution(arn)
        if not execution.is_terminal:
            raise ResourceConflict("Only a terminal execution can be deleted")
        now = clock.now()
        Execution.objects.filter(parent=execution).update(parent=None)
        execution.delete()
        return now


# --- redrive and re-run ---------------------------------------------------------------------

REDRIVABLE = (ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT)
RESET_STATUSES = ("FAILED", "TIMED_OUT", "STOPPED", "CANCELLED")
OPEN_STATUSES = ("STARTED", "PENDING", "READY")
# What the SDK checkpoints for an AT_MOST_ONCE step found STARTED on replay whose retry
# strategy gave up: the fully qualified class name (ErrorObject.from_exception). Matched on
# the class name alone, so an SDK that writes it unqualified (another language) counts too.
STEP_INTERRUPTED_ERROR_TYPE = "aws_durable_execution_sdk_python.exceptions.StepInterruptedError"
_STEP_INTERRUPTED_CLASS = STEP_INTERRUPTED_ERROR_TYPE.rsplit(".", 1)[1]
_PLAIN_CALL_LOST_HEAD, _PLAIN_CALL_LOST_TAIL = PLAIN_CALL_LOST_MESSAGE.split("{function}")


@dataclass(frozen=True)
class RedrivePreview:
    """What a redrive does to each operation of the execution.

    ``rerun``: reset, they run again (failed operations and the contexts around
    them). ``replayed``: succeeded, their checkpoints are returned without running
    them. ``resumed``: still open when the execution ended (a wait, a callback, a
    retry, a step in flight), kept as they are. ``interrupted``: an AT_MOST_ONCE
    step or a plain call whose attempt was cut off mid-body, so it may have taken
    effect; kept failed (the handler gets the same error back) unless the operator
    accepts running it again (``rerun_interrupted``), and then also in ``rerun``.
    """

    rerun: list[Operation]
    replayed: list[Operation]
    interrupted: list[Operation]
    resumed: list[Operation]
    rerun_interrupted: bool = False


@dataclass(frozen=True)
class Redriven:
    """A redrive that happened: the execution, RUNNING again, and the plan it followed."""

    execution: Execution
    plan: RedrivePreview


def is_interrupted(op: Operation) -> bool:
    """Whether ``op`` failed because an at-most-once attempt was cut off and may have run.

    An AT_MOST_ONCE step whose worker died or whose invocation timed out mid-body
    is seen STARTED on replay and fails with StepInterruptedError (its retry
    strategy declined); a plain chained invoke whose worker died after its claim
    fails with the "may or may not have run" Runtime.ExitError.
    """
    error = op.error or {}
    if op.status != "FAILED":
        return False
    if op.type == "STEP":
        return str(error.get("ErrorType") or "").rsplit(".", 1)[-1] == _STEP_INTERRUPTED_CLASS
    message = str(error.get("ErrorMessage") or "")
    return (
        op.type == "CHAINED_INVOKE"
        and error.get("ErrorType") == "Runtime.ExitError"
        and message.startswith(_PLAIN_CALL_LOST_HEAD)
        and message.endswith(_PLAIN_CALL_LOST_TAIL)
    )


def redrive_preview(execution: Execution, *, rerun_interrupted: bool = False) -> RedrivePreview:
    """What ``execution_redrive`` would do now, with or without accepting interrupted operations."""
    ops = [op for op in Operation.objects.filter(execution=execution) if op.type != "EXECUTION"]
    return _redrive_plan(ops, rerun_interrupted)


def redrive_interrupted_operations(
    execution_ids: list[int], *, chunk: int = 500
) -> dict[int, list[Operation]]:
    """For a bulk redrive's preview: per execution, its interrupted operations (``is_interrupted``).

    Executions without any are left out. Reads only failed steps and chained invokes,
    ``chunk`` executions per query.
    """
    found: dict[int, list[Operation]] = {}
    fields = ("execution_id", "operation_id", "name", "type", "status", "error")
    for start in range(0, len(execution_ids), chunk):
        failed = Operation.objects.filter(
            execution_id__in=execution_ids[start : start + chunk],
            status="FAILED",
            type__in=("STEP", "CHAINED_INVOKE"),
        ).only(*fields)
        for op in failed:
            if is_interrupted(op):
                found.setdefault(op.execution_id, []).append(op)
    return found


def _redrive_plan(ops: list[Operation], rerun_interrupted: bool) -> RedrivePreview:
    interrupted = [op for op in ops if is_interrupted(op)]
    reset_ids = _operations_to_reset(ops, rerun_interrupted=rerun_interrupted)
    kept = [op for op in ops if op.operation_id not in reset_ids and not is_interrupted(op)]
    return RedrivePreview(
        rerun=[op for op in ops if op.operation_id in reset_ids],
        replayed=[op for op in kept if op.status not in OPEN_STATUSES],
        interrupted=interrupted,
        resumed=[op for op in kept if op.status in OPEN_STATUSES],
        rerun_interrupted=rerun_interrupted,
    )


def _operations_to_reset(ops: list[Operation], *, rerun_interrupted: bool = False) -> set[str]:
    """Failed operations, and every context enclosing one (its body must run again).

    Completed siblings keep their checkpoints, so replay skips them. Interrupted
    operations keep their failed checkpoint unless ``rerun_interrupted``: run
    again, they could repeat an effect that already happened (a card captured
    twice); kept, the handler gets the same error and its own code decides. A
    failed context around one is still reset, which is harmless: replaying its
    body meets the kept checkpoint again.
    """
    by_id = {op.operation_id: op for op in ops}
    reset = {
        op.operation_id
        for op in ops
        if op.status in RESET_STATUSES and (rerun_interrupted or not is_interrupted(op))
    }
    for op_id in list(reset):
        parent_id = by_id[op_id].parent_id
        while parent_id and parent_id in by_id:
            reset.add(parent_id)
            parent_id = by_id[parent_id].parent_id
    return reset


def execution_redrive(arn: str, *, rerun_interrupted: bool = False) -> Execution:
    """Run a FAILED or TIMED_OUT execution again from its last good checkpoint.

    Failed operations (and the contexts around them) are removed, the execution
    is RUNNING again with a fresh timeout, and the handler replays: completed
    steps return their checkpointed results instead of running again.
    Interrupted operations (``is_interrupted``) stay failed unless
    ``rerun_interrupted`` says the operator accepts running them again.
    """
    return execution_redrive_planned(arn, rerun_interrupted=rerun_interrupted).execution


def execution_redrive_planned(arn: str, *, rerun_interrupted: bool = False) -> Redriven:
    """``execution_redrive``, also returning the plan it followed (decided under the row lock)."""
    with transaction.atomic():
        execution = lock_execution(arn)
        if execution.status not in REDRIVABLE:
            raise ResourceConflict(f"Only FAILED or TIMED_OUT executions can be redriven: {execution.status}")
        ops = [op for op in Operation.objects.filter(execution=execution) if op.type != "EXECUTION"]
        plan = _redrive_plan(ops, rerun_interrupted)
        reset_ids = [op.operation_id for op in plan.rerun]
        Operation.objects.filter(execution=execution, operation_id__in=reset_ids).delete()
        changes = ChangeSet(execution)
        execution.status = ExecutionStatus.RUNNING
        execution.result = None
        execution.error = None
        execution.ended_at = None
        execution.consecutive_failures = 0
        execution.invalid_pending_count = 0
        execution.timeout_at = changes.now + datetime.timedelta(seconds=execution.execution_timeout)
        execution.wake_at = None
        changes.recompute_wake = True
        execution_op = rows(Operation).select(
            "execution_id = %s AND operation_id = %s", [execution.pk, execution.invocation_id]
        )[0]
        execution_op.status = "STARTED"
        execution_op.ended_at = None
        changes.touch(execution_op)
        request_invocation(changes)
        commit_changes(changes, extra_fields=("timeout_at", "consecutive_failures", "invalid_pending_count"))
        return Redriven(execution, plan)


def execution_rerun(arn: str, input_payload: str | None = None) -> Execution:
    """Start a new execution of the same function with the same (or an edited) input."""
    original = Execution.objects.select_related("function").filter(arn=arn).first()
    if original is None:
        raise ResourceNotFound(f"Durable execution not found: {arn}")
    payload = original.input_payload if input_payload is None else input_payload
    return execution_start(function=original.function.name, input_payload=payload).execution


# --- retention --------------------------------------------------------------------------------


@retry_transient
def executions_purge_expired(now: datetime.datetime | None = None, *, batch: int = 200) -> int:
    """Delete terminal executions older than their function's retention period.

    Small batches keep each delete short; the scheduler calls this now and then.
    Returns how many executions were deleted.
    """
    now = now or clock.now()
    deleted = 0
    for function_id, retention_days in Function.objects.values_list("pk", "retention_days"):
        cutoff = now - datetime.timedelta(days=retention_days)
        expired = list(
            Execution.objects.filter(
                function_id=function_id, ended_at__lt=cutoff, status__in=TERMINAL_EXECUTION_STATUSES
            ).values_list("pk", flat=True)[:batch]
        )
        if expired:
            with transaction.atomic():
                Execution.objects.filter(parent_id__in=expired).update(parent=None)
                deleted += Execution.objects.filter(pk__in=expired).delete()[1].get("executions.Execution", 0)
    return deleted
