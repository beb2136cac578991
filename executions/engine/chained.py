"""Plain (non-durable) chained-invoke targets: claimed once, completed once, and recovered
when the worker that claimed one died (at most once)."""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.db import transaction

from executions.engine import clock
from executions.engine.changes import ChangeSet
from executions.engine.db_retry import retry_transient
from executions.engine.invocations import MAX_CHILD_RESULT_BYTES, lock_execution_by_pk
from executions.engine.transitions import (
    commit_changes,
    complete_chained_invoke,
)
from executions.models import (
    Execution,
    Operation,
)
from executions.vocabulary import OperationStatus, OperationType

# --- plain chained invokes ------------------------------------------------------------------
#
# A plain (non-durable) target is called at most once: a worker claims the call
# (compare-and-set on ``invoke_dispatch_pending``), calls the target while it renews
# the claim like an invocation's lease, and records the outcome. If that worker dies
# after its claim, nobody can tell whether the target ran, so the call is not made
# again: once the claim expires (a lease after the last renewal), the scheduler fails
# the operation with Runtime.ExitError and the handler sees an InvokeError it can handle.

PLAIN_CALL_LOST_MESSAGE = (
    "The worker calling {function} stopped before recording the outcome; the call may or may not have run"
)


@retry_transient
def plain_invoke_claim(execution_id: int, operation_id: str) -> Operation | None:
    """Claim a plain target's single call, or None if it was claimed already.

    The claim lasts ``DURABLE_LEASE_SECONDS`` and the caller renews it while the target
    runs (``plain_invoke_renew``); ``plain_invoke_recover`` ends the operation once it
    expired, so a dead worker's call fails within a lease. A retry after a COMMIT
    that went through finds the call claimed and returns None: the target is not
    called, and the operation fails at claim expiry (at most once, never twice).
    """
    with transaction.atomic():
        op = Operation.objects.filter(
            execution_id=execution_id,
            operation_id=operation_id,
            invoke_dispatch_pending=True,
            status=OperationStatus.STARTED,
        ).first()
        if op is None:
            return None
        expires = _claim_expiry()
        claimed = Operation.objects.filter(
            pk=op.pk, invoke_dispatch_pending=True, status=OperationStatus.STARTED
        ).update(invoke_dispatch_pending=False, invoke_claim_expires_at=expires)
        if not claimed:  # another worker claimed it between the read and the update
            return None
        op.invoke_dispatch_pending = False
        op.invoke_claim_expires_at = expires
        return op


def _claim_expiry() -> datetime.datetime:
    return clock.now() + datetime.timedelta(seconds=settings.DURABLE_LEASE_SECONDS)


@retry_transient
def plain_invoke_renew(execution_id: int, operation_id: str) -> bool:
    """Extend a claimed call's claim; False once it is gone (recovered, or the outcome recorded).

    Only the worker that claimed the call renews it (the claim is a compare-and-set), so
    the claim needs no owner of its own. One UPDATE: safe to repeat.
    """
    return bool(
        Operation.objects.filter(
            execution_id=execution_id,
            operation_id=operation_id,
            type=OperationType.CHAINED_INVOKE,
            status=OperationStatus.STARTED,
            invoke_dispatch_pending=False,
            invoke_claim_expires_at__isnull=False,
        ).update(invoke_claim_expires_at=_claim_expiry())
    )


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
        if op is None or op.status != OperationStatus.STARTED:
            return
        changes = ChangeSet(execution)
        if error is None and result is not None and len(result.encode()) > MAX_CHILD_RESULT_BYTES:
            error = {"ErrorMessage": "Chained invoke output exceeds 1 MiB"}
        if error is not None:
            complete_chained_invoke(changes, op, status=OperationStatus.FAILED, error=error)
        else:
            complete_chained_invoke(changes, op, status=OperationStatus.SUCCEEDED, result=result)
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
        complete_chained_invoke(changes, op, status=OperationStatus.FAILED, error=error)
        commit_changes(changes)
        return True


def _claim_expired(op: Operation, now: datetime.datetime) -> bool:
    return (
        op.type == OperationType.CHAINED_INVOKE
        and op.status == OperationStatus.STARTED
        and not op.invoke_dispatch_pending
        and op.invoke_claim_expires_at is not None
        and op.invoke_claim_expires_at <= now
    )
