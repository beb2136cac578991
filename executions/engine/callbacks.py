"""Callbacks completed from outside the handler: success, failure, heartbeat."""

from __future__ import annotations

import datetime
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
    if op.status != OperationStatus.STARTED or execution.is_terminal:
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
            changes, op, status=OperationStatus.SUCCEEDED, event_prefix="Callback", result=result or None
        )
        commit_changes(changes)


@retry_transient
def callback_fail(callback_id: str, error: dict[str, Any] | None) -> None:
    """SendDurableExecutionCallbackFailure: absent error fields stay absent.

    Callbacks are single use: a retry after a COMMIT that went through raises
    CallbackTimeout although the completion was recorded (as callback_succeed).
    """

    if error is not None:
        _validate_error_object(error)
    with transaction.atomic():
        changes, op = _lock_callback(callback_id)
        complete_async_operation(
            changes, op, status=OperationStatus.FAILED, event_prefix="Callback", error=error or {}
        )
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
