"""Lifecycle actions on a whole execution: stop, pause, resume, delete, redrive, re-run,
and the retention purge."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, cast

from django.db import transaction

from executions.engine import clock
from executions.engine.chained import PLAIN_CALL_LOST_MESSAGE
from executions.engine.changes import ChangeSet, wrap_payload
from executions.engine.checkpoint import lock_execution
from executions.engine.db_retry import retry_transient
from executions.engine.errors import (
    ResourceConflict,
    ResourceNotFound,
)
from executions.engine.rows import rows
from executions.engine.starts import execution_start
from executions.engine.transitions import (
    close_execution,
    commit_changes,
    request_invocation,
)
from executions.engine.validation import _validate_error_object
from executions.models import Execution, Function, Operation
from executions.vocabulary import (
    OPEN_OPERATION_STATUSES,
    REDRIVABLE_STATUSES,
    TERMINAL_EXECUTION_STATUSES,
    ExecutionStatus,
    OperationStatus,
    OperationType,
)

# --- operator actions -----------------------------------------------------------------------

# An execution by ARN (the API, the CLI) or the row a caller already loaded (the console's
# permission check, a bulk job): either way it is locked and read again here.
ExecutionRef = Execution | str


def _lock(target: ExecutionRef) -> Execution:
    if isinstance(target, str):
        return lock_execution(target)
    found = rows(Execution).select("id = %s", [target.pk], for_update=True)
    if not found:
        raise ResourceNotFound(f"Durable execution not found: {target.arn}")
    return found[0]


def execution_stop(target: ExecutionRef, error: dict[str, Any] | None = None) -> datetime.datetime:
    """StopDurableExecution: close as STOPPED; idempotent on a stopped execution."""
    if error is not None:
        _validate_error_object(error)
    with transaction.atomic():
        execution = _lock(target)
        if execution.status == ExecutionStatus.STOPPED:
            return cast(datetime.datetime, execution.ended_at)  # every closed execution has one
        if execution.is_terminal:
            raise ResourceConflict(f"Execution is already {execution.status}")
        changes = ChangeSet(execution)
        stop_error = error or {"ErrorMessage": "Execution stopped by user request"}
        close_execution(changes, ExecutionStatus.STOPPED, error=stop_error)
        commit_changes(changes)
        return changes.now


# In pause_details while a pause holds the execution timeout: the seconds it had left.
HELD_TIMEOUT = "HeldTimeoutSeconds"


def execution_pause(target: ExecutionRef, *, reason: str | None = None, timeout_paused: bool = False) -> None:
    """PauseDurableExecution: no invocations while paused; timers and callbacks go on."""
    with transaction.atomic():
        execution = _lock(target)
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
        if timeout_paused and execution.timeout_at:
            # The clock stops: no deadline while paused (so the timers cannot time it out),
            # and what was left of it is given back on resume.
            left = max(0.0, (execution.timeout_at - changes.now).total_seconds())
            execution.pause_details[HELD_TIMEOUT] = left
            execution.timeout_at = None
            changes.recompute_wake = True
        _pause_event(
            changes, "ExecutionPaused", "PauseRequestTimestamp", reason, ExecutionTimeoutPaused=timeout_paused
        )
        commit_changes(changes, extra_fields=("pause_details", "timeout_at"))


def execution_resume(target: ExecutionRef, *, reason: str | None = None) -> None:
    """ResumeDurableExecution: invoke if an invocation was held back or interrupted."""
    with transaction.atomic():
        execution = _lock(target)
        if execution.status == ExecutionStatus.RUNNING:
            return
        if execution.status != ExecutionStatus.PAUSED:
            raise ResourceConflict(f"Cannot resume an execution that is {execution.status}")
        changes = ChangeSet(execution)
        execution.status = ExecutionStatus.RUNNING
        details = execution.pause_details or {}
        if HELD_TIMEOUT in details:
            execution.timeout_at = changes.now + datetime.timedelta(seconds=details[HELD_TIMEOUT])
            changes.recompute_wake = True
        execution.pause_details = None
        _pause_event(changes, "ExecutionResumed", "ResumeRequestTimestamp", reason)
        if execution.needs_invocation or execution.change_seq > execution.seen_seq:
            request_invocation(changes)
        commit_changes(changes, extra_fields=("pause_details", "timeout_at"))


def _pause_event(changes: ChangeSet, event_type: str, asked_at: str, reason: str | None, **more: Any) -> None:
    """ExecutionPaused / ExecutionResumed: when it was asked (the ``asked_at`` field) and why."""
    reason_payload = wrap_payload(reason) if reason else None
    changes.event(event_type, None, **{asked_at: changes.now.timestamp()}, Reason=reason_payload, **more)


def execution_delete(target: ExecutionRef) -> datetime.datetime:
    """DeleteDurableExecution: only terminal executions; the rows go at once."""
    with transaction.atomic():
        execution = _lock(target)
        if not execution.is_terminal:
            raise ResourceConflict("Only a terminal execution can be deleted")
        now = clock.now()
        Execution.objects.filter(parent=execution).update(parent=None)
        execution.delete()
        return now


# --- redrive and re-run ---------------------------------------------------------------------

# Operations a redrive resets (and runs again), unless interrupted (see ``is_interrupted``).
RESET_STATUSES = (
    OperationStatus.FAILED,
    OperationStatus.TIMED_OUT,
    OperationStatus.STOPPED,
    OperationStatus.CANCELLED,
)
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
    if op.status != OperationStatus.FAILED:
        return False
    if op.type == OperationType.STEP:
        return str(error.get("ErrorType") or "").rsplit(".", 1)[-1] == _STEP_INTERRUPTED_CLASS
    message = str(error.get("ErrorMessage") or "")
    return (
        op.type == OperationType.CHAINED_INVOKE
        and error.get("ErrorType") == "Runtime.ExitError"
        and message.startswith(_PLAIN_CALL_LOST_HEAD)
        and message.endswith(_PLAIN_CALL_LOST_TAIL)
    )


def redrive_preview(execution: Execution, *, rerun_interrupted: bool = False) -> RedrivePreview:
    """What ``execution_redrive`` would do now, with or without accepting interrupted operations."""
    ops = [op for op in Operation.objects.filter(execution=execution) if op.type != OperationType.EXECUTION]
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
            status=OperationStatus.FAILED,
            type__in=(OperationType.STEP, OperationType.CHAINED_INVOKE),
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
        replayed=[op for op in kept if op.status not in OPEN_OPERATION_STATUSES],
        interrupted=interrupted,
        resumed=[op for op in kept if op.status in OPEN_OPERATION_STATUSES],
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


def execution_redrive(target: ExecutionRef, *, rerun_interrupted: bool = False) -> Execution:
    """Run a FAILED or TIMED_OUT execution again from its last good checkpoint.

    Failed operations (and the contexts around them) are removed, the execution
    is RUNNING again with a fresh timeout, and the handler replays: completed
    steps return their checkpointed results instead of running again.
    Interrupted operations (``is_interrupted``) stay failed unless
    ``rerun_interrupted`` says the operator accepts running them again.
    """
    return execution_redrive_planned(target, rerun_interrupted=rerun_interrupted).execution


def execution_redrive_planned(target: ExecutionRef, *, rerun_interrupted: bool = False) -> Redriven:
    """``execution_redrive``, also returning the plan it followed (decided under the row lock)."""
    with transaction.atomic():
        execution = _lock(target)
        if execution.status not in REDRIVABLE_STATUSES:
            raise ResourceConflict(f"Only FAILED or TIMED_OUT executions can be redriven: {execution.status}")
        ops = [
            op for op in Operation.objects.filter(execution=execution) if op.type != OperationType.EXECUTION
        ]
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
        execution_op.status = OperationStatus.STARTED
        execution_op.ended_at = None
        changes.touch(execution_op)
        request_invocation(changes)
        commit_changes(changes, extra_fields=("timeout_at", "consecutive_failures", "invalid_pending_count"))
        return Redriven(execution, plan)


def execution_rerun(target: ExecutionRef, input_payload: str | None = None) -> Execution:
    """Start a new execution of the same function with the same (or an edited) input."""
    arn = target if isinstance(target, str) else target.arn
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
