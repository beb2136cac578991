"""How each operation update of a checkpoint changes the stored operations (docs/api.md to §2.4).

``apply_update`` is called for every update of a batch that ``validation.validate_batch``
accepted, on a ``ChangeSet`` of the locked (or, on the fast path, cached) execution.
Each applier sets the operation's fields and appends the history event the update
produces; none of them writes anything itself.
"""

from __future__ import annotations

import datetime
from typing import Any

from executions.engine import callback_ids
from executions.engine.changes import ChangeSet, epoch, wrap_payload
from executions.engine.effects import PlainInvoke
from executions.engine.errors import InvalidParameterValue, ResourceNotFound, ServiceError
from executions.engine.functions import function_resolve
from executions.engine.plain_names import (
    CALLBACK,
    CANCEL,
    CANCELLED,
    CHAINED_INVOKE,
    CONTEXT,
    EXECUTION,
    FAILED,
    PENDING,
    RETRY,
    START,
    STARTED,
    STEP,
    SUCCEED,
    SUCCEEDED,
    WAIT,
)
from executions.engine.rows import rows
from executions.engine.starts import create_execution
from executions.engine.transitions import close_execution, next_callback_deadline
from executions.models import Execution, ExecutionStatus, Function, Operation
from executions.vocabulary import plain

MAX_CHAINED_INVOKE_BYTES = 1024 * 1024


def apply_update(changes: ChangeSet, stored: dict[str, Operation], update: dict[str, Any]) -> None:
    op_type = update["Type"]
    if op_type == EXECUTION:
        _apply_execution(changes, update)
        return
    op = stored.get(update["Id"])
    if op is None:
        op = changes.add_operation(
            rows(Operation).build(
                {
                    "operation_id": update["Id"],
                    "parent_id": update.get("ParentId") or "",
                    "name": update.get("Name") or "",
                    "type": op_type,
                    "sub_type": update.get("SubType") or "",
                    "status": STARTED,
                    "started_at": changes.now,
                }
            )
        )
        stored[op.operation_id] = op
    else:
        changes.touch(op)
    APPLIERS[op_type](changes, op, update)


def _apply_step(changes: ChangeSet, op: Operation, update: dict[str, Any]) -> None:
    action = update["Action"]
    if action == START:
        op.status = STARTED
        op.error = None
        changes.event("StepStarted", op)
        return
    op.attempt += 1
    if action == RETRY:
        delay = update["StepOptions"]["NextAttemptDelaySeconds"]
        op.status = PENDING
        op.next_attempt_at = changes.now + datetime.timedelta(seconds=delay)
        op.result = update.get("Payload")
        op.error = update.get("Error")
        changes.set_timer(op, op.next_attempt_at)
        retry = {"CurrentAttempt": op.attempt, "NextAttemptDelaySeconds": delay}
        if op.error is not None:
            changes.event("StepFailed", op, Error=wrap_payload(op.error), RetryDetails=retry)
        else:  # a wait_for_condition poll: the state travels as the result
            changes.event("StepSucceeded", op, Result=wrap_payload(op.result), RetryDetails=retry)
        return
    op.ended_at = changes.now
    op.next_attempt_at = None
    retry = {"CurrentAttempt": op.attempt}
    if action == SUCCEED:
        op.status = SUCCEEDED
        op.result = update.get("Payload")
        op.error = None
        changes.event("StepSucceeded", op, Result=wrap_payload(op.result), RetryDetails=retry)
    else:
        op.status = FAILED
        op.error = update.get("Error")
        changes.event("StepFailed", op, Error=wrap_payload(op.error or {}), RetryDetails=retry)


def _apply_context(changes: ChangeSet, op: Operation, update: dict[str, Any]) -> None:
    action = update["Action"]
    if action == START:
        op.status = STARTED
        changes.event("ContextStarted", op)
        return
    op.ended_at = changes.now
    options = update.get("ContextOptions") or {}
    op.replay_children = bool(options.get("ReplayChildren"))
    if action == SUCCEED:
        op.status = SUCCEEDED
        op.result = update.get("Payload")
        changes.event("ContextSucceeded", op, Result=wrap_payload(op.result))
    else:
        op.status = FAILED
        op.error = update.get("Error")
        changes.event("ContextFailed", op, Error=wrap_payload(op.error or {}))


def _apply_wait(changes: ChangeSet, op: Operation, update: dict[str, Any]) -> None:
    if update["Action"] == CANCEL:
        op.status = CANCELLED
        op.ended_at = changes.now
        changes.set_timer(op, None)
        changes.event("WaitCancelled", op)
        return
    seconds = update["WaitOptions"]["WaitSeconds"]
    op.status = STARTED
    op.wait_seconds = seconds
    op.scheduled_end_at = changes.now + datetime.timedelta(seconds=seconds)
    changes.set_timer(op, op.scheduled_end_at)
    changes.event("WaitStarted", op, Duration=seconds, ScheduledEndTimestamp=epoch(op.scheduled_end_at))


def _apply_callback(changes: ChangeSet, op: Operation, update: dict[str, Any]) -> None:
    options = update.get("CallbackOptions") or {}
    timeout = options.get("TimeoutSeconds") or 0
    heartbeat = options.get("HeartbeatTimeoutSeconds") or 0
    op.status = STARTED
    op.callback_seed = callback_ids.new_seed()
    op.callback_id_hash = callback_ids.hash_callback_id(callback_ids.callback_id_for(op.callback_seed))
    op.callback_timeout = timeout
    op.callback_heartbeat_timeout = heartbeat
    if timeout:
        op.callback_timeout_at = changes.now + datetime.timedelta(seconds=timeout)
    if heartbeat:
        op.callback_heartbeat_at = changes.now + datetime.timedelta(seconds=heartbeat)
    changes.set_timer(op, next_callback_deadline(op))
    # Only the seed is stored; the id is derived again when the event is read.
    changes.event(
        "CallbackStarted",
        op,
        CallbackSeed=op.callback_seed,
        Timeout=timeout,
        HeartbeatTimeout=heartbeat,
    )


def _apply_chained_invoke(changes: ChangeSet, op: Operation, update: dict[str, Any]) -> None:
    options = update["ChainedInvokeOptions"]
    reference = options["FunctionName"]
    payload = update.get("Payload")
    if payload is not None and len(payload.encode()) > MAX_CHAINED_INVOKE_BYTES:
        raise InvalidParameterValue("Chained invoke payload exceeds 1 MiB")
    op.status = STARTED
    op.invoke_function_name = reference
    op.invoke_tenant_id = options.get("TenantId") or ""
    try:
        target, qualifier = function_resolve(reference)
        if not target.enabled:
            raise ResourceNotFound(f"Function {target.name} is disabled.")
    except ServiceError as exc:
        # Unresolvable targets fail in this same response and store no input.
        changes.event("ChainedInvokeStarted", op, **_invoke_target(op))
        op.status = FAILED
        op.ended_at = changes.now
        op.error = {"ErrorType": exc.code, "ErrorMessage": exc.message}
        changes.event("ChainedInvokeFailed", op, Error=wrap_payload(op.error))
        return
    op.input_payload = payload
    details: dict[str, Any] = {
        **_invoke_target(op),
        "Input": wrap_payload(payload),
        "ExecutedVersion": str(target.version),
    }
    if target.durable:
        child = _start_child(changes, op, target, qualifier, payload)
        details["DurableExecutionArn"] = child.arn
    else:
        op.invoke_dispatch_pending = True
        changes.after_commit.append(PlainInvoke(changes.execution.pk, op.operation_id))
    changes.event("ChainedInvokeStarted", op, **details)


def _invoke_target(op: Operation) -> dict[str, str]:
    """ChainedInvokeStartedDetails' FunctionName and, when the invoke named one, TenantId.

    The tenant is part of what was invoked (it scopes the target's execution), so the
    history names it alongside the function; an invoke without a tenant has no TenantId
    key at all, as the model's TenantId has a minimum length of 1.
    """
    target = {"FunctionName": op.invoke_function_name}
    if op.invoke_tenant_id:
        target["TenantId"] = op.invoke_tenant_id
    return target


def _start_child(
    changes: ChangeSet, op: Operation, target: Function, qualifier: str | None, payload: str | None
) -> Execution:
    parent = changes.execution
    child = create_execution(
        target,
        payload if payload not in (None, "") else "{}",
        # The invocation number keeps names unique when a redriven op starts a new child.
        name=f"{parent.invocation_id[:20]}-{op.operation_id[:32]}-{parent.invocation_count}",
        qualifier=qualifier,
        tenant_id=op.invoke_tenant_id,
        parent=parent,
        parent_operation_id=op.operation_id,
    )
    if child is None:  # the name exists: this op already dispatched it once
        child = Execution.objects.get(parent=parent, parent_operation_id=op.operation_id)
    return child


def _apply_execution(changes: ChangeSet, update: dict[str, Any]) -> None:
    """EXECUTION SUCCEED/FAIL closes the execution; it creates no operation."""
    if update["Action"] == SUCCEED:
        close_execution(changes, ExecutionStatus.SUCCEEDED, result=update.get("Payload") or "")
    else:
        close_execution(changes, ExecutionStatus.FAILED, error=update.get("Error") or {})


APPLIERS = plain(
    {
        STEP: _apply_step,
        CONTEXT: _apply_context,
        WAIT: _apply_wait,
        CALLBACK: _apply_callback,
        CHAINED_INVOKE: _apply_chained_invoke,
    }
)
