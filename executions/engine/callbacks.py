"""Callbacks completed from outside the handler: success, failure, heartbeat."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from executions.engine.callback_ids import hash_callback_id
from executions.engine.changes import ChangeSet
from executions.engine.db_retry import retry_transient
from executions.engine.errors import (
    CallbackTimeout,
    InvalidParameterValue,
    ResourceNotFound,
)
from executions.engine.transitions import (
    commit_changes,
    complete_async_operation,
    complete_due_timers,
    next_callback_deadline,
)
from executions.engine.validation import _validate_error_object
from executions.models import (
    Execution,
    Operation,
)
from executions.vocabulary import OperationStatus

# --- callbacks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CompletedCallback:
    """Which callback a completion by callback id reached (the caller only held the id)."""

    execution_arn: str
    operation_id: str


def _lock_callback(callback_id: str) -> tuple[ChangeSet, Operation]:
    if not isinstance(callback_id, str) or not callback_id:
        raise InvalidParameterValue("CallbackId is required")
    op = Operation.objects.filter(callback_id_hash=hash_callback_id(callback_id)).first()
    if op is None:
        raise ResourceNotFound("Callback not found")
    return _lock_callback_operation(op)


def _lock_callback_operation(held: Operation) -> tuple[ChangeSet, Operation]:
    """Lock ``held``'s execution by pk and re-read the operation under the lock.

    Refused as not found if the operation is gone or is no longer the callback the caller
    held (a redrive recreated it with another callback id).
    """
    execution = Execution.objects.select_for_update().filter(pk=held.execution_id).first()
    op = Operation.objects.filter(execution_id=held.execution_id, operation_id=held.operation_id).first()
    if execution is None or op is None or op.callback_id_hash != held.callback_id_hash:
        raise ResourceNotFound("Callback not found")
    changes = ChangeSet(execution)
    complete_due_timers(changes)  # a callback past its timeout cannot be completed
    op = changes.modified.get(op.operation_id, op)
    if op.status != OperationStatus.STARTED or execution.is_terminal:
        raise CallbackTimeout()
    return changes, op


@retry_transient
def callback_succeed(callback_id: str, result: str | bytes | None) -> CompletedCallback:
    """SendDurableExecutionCallbackSuccess: the raw result becomes the callback's Result.

    An empty or absent Result (one request on the wire: boto3 sends an empty body for
    both) completes the callback with no result at all, so the handler's
    ``callback.result()`` returns None rather than "", as at the service.
    """
    checked = _checked_result(result)
    with transaction.atomic():
        return _succeed(*_lock_callback(callback_id), checked)


@retry_transient
def callback_succeed_operation(op: Operation, result: str | bytes | None) -> None:
    """``callback_succeed`` for a caller that holds the CALLBACK operation (console, approvals)."""
    checked = _checked_result(result)
    with transaction.atomic():
        _succeed(*_lock_callback_operation(op), checked)


@retry_transient
def callback_fail(callback_id: str, error: dict[str, Any] | None) -> CompletedCallback:
    """SendDurableExecutionCallbackFailure: absent error fields stay absent.

    Callbacks are single use: a retry after a COMMIT that went through raises
    CallbackTimeout although the completion was recorded (as callback_succeed).
    """
    if error is not None:
        _validate_error_object(error)
    with transaction.atomic():
        return _fail(*_lock_callback(callback_id), error)


@retry_transient
def callback_fail_operation(op: Operation, error: dict[str, Any] | None) -> None:
    """``callback_fail`` for a caller that holds the CALLBACK operation (console, approvals)."""
    if error is not None:
        _validate_error_object(error)
    with transaction.atomic():
        _fail(*_lock_callback_operation(op), error)


def _checked_result(result: str | bytes | None) -> str | None:
    if isinstance(result, bytes):
        try:
            result = result.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidParameterValue("Callback result must be UTF-8") from exc
    if result is not None and len(result.encode()) > 1024 * 1024:
        raise InvalidParameterValue("Callback result exceeds 1 MiB")
    return result


def _succeed(changes: ChangeSet, op: Operation, result: str | None) -> CompletedCallback:
    complete_async_operation(
        changes, op, status=OperationStatus.SUCCEEDED, event_prefix="Callback", result=result or None
    )
    commit_changes(changes)
    return CompletedCallback(changes.execution.arn, op.operation_id)


def _fail(changes: ChangeSet, op: Operation, error: dict[str, Any] | None) -> CompletedCallback:
    complete_async_operation(
        changes, op, status=OperationStatus.FAILED, event_prefix="Callback", error=error or {}
    )
    commit_changes(changes)
    return CompletedCallback(changes.execution.arn, op.operation_id)


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
