"""Transitions shared by the services: closing executions, timers, re-invocation.

Each function works on a ``ChangeSet`` whose execution row is already locked by
the calling service; none of them opens a transaction or commits.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from executions.engine import effects as dispatch
from executions.engine.changes import ChangeSet, epoch, wrap_payload
from executions.engine.rows import rows
from executions.models import Execution, ExecutionStatus, Operation
from executions.vocabulary import OperationStatus, OperationType

CALLBACK_TIMEOUT_ERROR = {"ErrorType": "Callback.Timeout", "ErrorMessage": "Callback timed out"}
CALLBACK_HEARTBEAT_ERROR = {
    "ErrorType": "Callback.Heartbeat",
    "ErrorMessage": "Callback timed out on heartbeat",
}
CHAINED_INVOKE_FAILED_ERROR = {"ErrorMessage": "Chained invoke failed."}

# The history event an outside completion writes: its prefix ("Callback", "ChainedInvoke") + this.
_EVENT_SUFFIX: dict[str, str] = {
    OperationStatus.SUCCEEDED: "Succeeded",
    OperationStatus.FAILED: "Failed",
    OperationStatus.TIMED_OUT: "TimedOut",
    OperationStatus.STOPPED: "Stopped",
}


def request_invocation(changes: ChangeSet, *, at: datetime.datetime | None = None) -> None:
    """Ask for a (re-)invocation; a worker's claim, a wake-up hint or the scheduler runs it.

    No hint while a worker holds the execution's lease: that worker's
    ``invocation_finish`` reports the invocation due and it runs it next itself
    (and should it die, the lease's expiry asks again). A hint goes out (after
    commit) only for an invocation due now; ``dispatched_at`` records it, so the
    scheduler re-sends one only if it is lost (``workers/scheduler.py``).
    """
    execution = changes.execution
    if execution.is_terminal:
        return
    due = at or changes.now
    if not execution.needs_invocation or (
        execution.invocation_due_at is None or due < execution.invocation_due_at
    ):
        execution.invocation_due_at = due
    execution.needs_invocation = True
    if due > changes.now or lease_held(execution, changes.now):
        return
    if dispatch.can_hint():
        execution.dispatched_at = changes.now
    changes.after_commit.append(dispatch.Wake(execution.pk))


def lease_held(execution: Execution, now: datetime.datetime) -> bool:
    """Whether a worker holds the execution's lease (an invocation is in flight)."""
    return (
        bool(execution.lease_owner)
        and execution.lease_expires_at is not None
        and execution.lease_expires_at > now
    )


def close_execution(
    changes: ChangeSet,
    status: str,
    *,
    result: str | None = None,
    error: dict[str, Any] | None = None,
) -> None:
    """Move the execution to a terminal status and record why."""
    execution = changes.execution
    execution.status = status
    execution.result = result
    execution.error = error
    execution.ended_at = changes.now
    execution.needs_invocation = False
    execution.invocation_due_at = None
    execution_op = execution_operation(execution, changes)
    execution_op.status = status
    execution_op.ended_at = changes.now
    changes.touch(execution_op)
    if status == ExecutionStatus.SUCCEEDED:
        changes.event("ExecutionSucceeded", execution_op, Result=wrap_payload(result))
    else:
        event_type = {
            ExecutionStatus.FAILED: "ExecutionFailed",
            ExecutionStatus.TIMED_OUT: "ExecutionTimedOut",
            ExecutionStatus.STOPPED: "ExecutionStopped",
        }[ExecutionStatus(status)]
        changes.event(event_type, execution_op, Error=wrap_payload(error or {}))
    if execution.parent_id:
        changes.complete_parent_in_transaction = True


def execution_operation(execution: Execution, changes: ChangeSet | None = None) -> Operation:
    if changes is not None:
        pending = changes.modified.get(execution.invocation_id) or changes.created.get(
            execution.invocation_id
        )
        if pending is not None:
            return pending
    return rows(Operation).select(
        "execution_id = %s AND operation_id = %s", [execution.pk, execution.invocation_id]
    )[0]


def complete_due_timers(changes: ChangeSet) -> bool:
    """Fire every timer of the execution that is due; returns whether any fired.

    Cheap when nothing is due: the execution's ``wake_at`` says so without a query.
    The scheduler fires many executions' timers at once with the same transitions
    (``timers.timers_fire_batch`` calls ``fire_due_operations``).
    """
    if not timers_due(changes):
        return False
    if timeout_due(changes):
        timeout_execution(changes)
        return True
    due = Operation.objects.filter(execution=changes.execution, timer_at__lte=changes.now).order_by(
        "position"
    )
    fired = fire_due_operations(changes, due)
    changes.recompute_wake = True
    return fired


def timers_due(changes: ChangeSet) -> bool:
    """Whether the execution has a timer (or its timeout) due now."""
    execution = changes.execution
    return not execution.is_terminal and execution.wake_at is not None and execution.wake_at <= changes.now


def timeout_due(changes: ChangeSet) -> bool:
    """Whether the execution's own timeout has passed (it then ends TIMED_OUT)."""
    timeout_at = changes.execution.timeout_at
    return timeout_at is not None and timeout_at <= changes.now


def fire_due_operations(changes: ChangeSet, due: Iterable[Operation]) -> bool:
    """Fire the timers of ``due`` (operations whose ``timer_at`` passed, in position order).

    Leaves ``wake_at`` to the caller: ``complete_due_timers`` has the flush recompute it.
    """
    fired = False
    for op in due:
        op = changes.modified.get(op.operation_id, op)
        fired |= fire_operation_timer(changes, op)
    return fired


# The columns fire_operation_timer (and request_invocation after it) may change: the
# scheduler's bulk writes (timers.timers_fire_batch) update exactly these.
TIMER_OPERATION_FIELDS = (
    "status",
    "ended_at",
    "touched_seq",
    "error",
    "next_attempt_at",
    "timer_at",
)
TIMER_EXECUTION_FIELDS = (
    "change_seq",
    "event_count",
    "updated_operation_ids",
    "wake_at",
    "needs_invocation",
    "invocation_due_at",
    "dispatched_at",
)


def fire_operation_timer(changes: ChangeSet, op: Operation) -> bool:
    now = changes.now
    if (
        op.type == OperationType.WAIT
        and op.status == OperationStatus.STARTED
        and op.scheduled_end_at
        and op.scheduled_end_at <= now
    ):
        op.status = OperationStatus.SUCCEEDED
        op.ended_at = now
        changes.set_timer(op, None)
        changes.touch(op, by_service=True)
        changes.event("WaitSucceeded", op, Duration=op.wait_seconds)
        return True
    if (
        op.type == OperationType.STEP
        and op.status == OperationStatus.PENDING
        and op.next_attempt_at
        and op.next_attempt_at <= now
    ):
        # PENDING becomes READY silently: the SDK sends START for the next attempt.
        op.status = OperationStatus.READY
        op.next_attempt_at = None
        changes.set_timer(op, None)
        changes.touch(op, by_service=True)
        return True
    if op.type == OperationType.CALLBACK and op.status == OperationStatus.STARTED:
        if op.callback_timeout_at and op.callback_timeout_at <= now:
            time_out_callback(changes, op, CALLBACK_TIMEOUT_ERROR)
            return True
        if op.callback_heartbeat_at and op.callback_heartbeat_at <= now:
            time_out_callback(changes, op, CALLBACK_HEARTBEAT_ERROR)
            return True
    # Not due after all (a heartbeat moved the deadline): re-arm without a visible change.
    changes.set_timer(op, next_callback_deadline(op) if op.status == OperationStatus.STARTED else None)
    changes.save_quietly(op)
    return False


def time_out_callback(changes: ChangeSet, op: Operation, error: dict[str, str]) -> None:
    op.status = OperationStatus.TIMED_OUT
    op.error = dict(error)
    op.ended_at = changes.now
    changes.set_timer(op, None)
    changes.touch(op, by_service=True)
    changes.event("CallbackTimedOut", op, Error=wrap_payload(op.error))


def next_callback_deadline(op: Operation) -> datetime.datetime | None:
    deadlines = [d for d in (op.callback_timeout_at, op.callback_heartbeat_at) if d]
    return min(deadlines) if deadlines else None


def timeout_execution(changes: ChangeSet) -> None:
    seconds = changes.execution.execution_timeout
    close_execution(
        changes,
        ExecutionStatus.TIMED_OUT,
        error={"ErrorMessage": f"Execution timed out after {seconds} seconds."},
    )


def complete_async_operation(
    changes: ChangeSet,
    op: Operation,
    *,
    status: str,
    event_prefix: str,
    result: str | None = None,
    error: dict[str, Any] | None = None,
) -> None:
    """Record an outcome that arrived from outside the handler, and re-invoke it.

    Callbacks answered and chained invokes finished both land here: the
    operation closes, its history event (``<prefix>Succeeded``/``Failed``/...)
    is written, and the handler gets an invocation to see it.
    """
    op.status = status
    op.result = result
    op.error = error
    op.ended_at = changes.now
    op.invoke_dispatch_pending = False
    changes.set_timer(op, None)
    changes.touch(op, by_service=True)
    if status == OperationStatus.SUCCEEDED:
        changes.event(event_prefix + _EVENT_SUFFIX[status], op, Result=wrap_payload(result))
    else:
        changes.event(event_prefix + _EVENT_SUFFIX[status], op, Error=wrap_payload(error or {}))
    request_invocation(changes)


def complete_chained_invoke(
    changes: ChangeSet,
    op: Operation,
    *,
    status: str,
    result: str | None = None,
    error: dict[str, Any] | None = None,
) -> None:
    """Record a chained invoke's outcome on the caller's operation and re-invoke it."""
    if op.status == OperationStatus.STARTED:
        complete_async_operation(
            changes, op, status=status, event_prefix="ChainedInvoke", result=result, error=error
        )


def child_outcome_for_parent(child: Execution) -> dict[str, Any]:
    """The parent's CHAINED_INVOKE outcome for a terminal child execution."""
    if child.status == ExecutionStatus.SUCCEEDED:
        return {"status": OperationStatus.SUCCEEDED, "result": child.result}
    if child.status == ExecutionStatus.TIMED_OUT:
        return {"status": OperationStatus.TIMED_OUT, "error": child.error}
    if child.status == ExecutionStatus.STOPPED:
        return {"status": OperationStatus.STOPPED, "error": child.error}
    return {"status": OperationStatus.FAILED, "error": child.error or dict(CHAINED_INVOKE_FAILED_ERROR)}


def invocation_completed_event(
    changes: ChangeSet,
    *,
    started_at: datetime.datetime,
    request_id: str,
    error: dict[str, Any] | None,
) -> None:
    changes.event(
        "InvocationCompleted",
        None,
        StartTimestamp=epoch(started_at),
        EndTimestamp=epoch(changes.now),
        RequestId=request_id,
        Error=wrap_payload(error) if error else {},
    )


def commit_changes(changes: ChangeSet, *, extra_fields: tuple[str, ...] = ()) -> None:
    """Flush a change set, complete a waiting parent in the same transaction, and queue the
    after-commit effects (the parent's change set queues its own).
    """
    changes.flush(extra_fields=extra_fields)
    if changes.complete_parent_in_transaction:
        complete_parent_in_transaction(changes.execution)
    dispatch.after_commit([dispatch.Changed(changes.execution.pk), *changes.after_commit])


def complete_parent_in_transaction(child: Execution) -> None:
    """Complete the parent's CHAINED_INVOKE with the child's outcome, inside the child's
    transaction: not an after-commit effect, on purpose.

    Run after commit, a crash or a lost connection between the child's COMMIT and the
    parent's would leave the parent waiting for ever: nothing else completes a durable
    child's CHAINED_INVOKE (the scheduler only recovers plain calls), and the child, being
    closed, is never looked at again. Here both commit or neither does, and no reader sees
    a closed child whose parent still waits. Lock order is always child, then parent; a
    parent never locks its children, so this cannot deadlock with another closing child.
    """
    if child.parent_id is None:
        return
    parent = Execution.objects.select_for_update().filter(pk=child.parent_id).first()
    if parent is None or parent.is_terminal:
        return
    op = Operation.objects.filter(execution=parent, operation_id=child.parent_operation_id).first()
    if op is None or op.status != OperationStatus.STARTED:
        return
    parent_changes = ChangeSet(parent)
    complete_chained_invoke(parent_changes, op, **child_outcome_for_parent(child))
    commit_changes(parent_changes)
