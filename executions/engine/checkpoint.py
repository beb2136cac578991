"""CheckpointDurableExecution and GetDurableExecutionState (docs/api.md to §2.6).

One checkpoint call is one transaction: lock the execution row, check the
token, validate the batch, apply it, complete due timers, compute the delta
the SDK must see, rotate the token. Wake-up hints go out after commit.
"""

from __future__ import annotations

import datetime
from functools import partial
from typing import Any, cast

from django.conf import settings
from django.db import transaction

from executions.engine import callback_ids, clock
from executions.engine.changes import ChangeSet, epoch, wrap_payload
from executions.engine.db_retry import if_commit_lost, retry_transient
from executions.engine.errors import (
    InvalidCheckpointToken,
    InvalidParameterValue,
    ResourceNotFound,
    ServiceError,
)
from executions.engine.functions import function_resolve
from executions.engine.rows import rows, select_many
from executions.engine.starts import create_execution
from executions.engine.tokens import CheckpointToken, decode_marker, encode_marker
from executions.engine.transitions import (
    close_execution,
    commit_changes,
    complete_due_timers,
    next_callback_deadline,
)
from executions.engine.validation import StoredOp, validate_batch
from executions.engine.wire import TimestampFormat, as_datetime, as_epoch_seconds, operation_to_wire
from executions.models import Execution, ExecutionStatus, Function, Operation

CLIENT_TOKEN_WINDOW = datetime.timedelta(minutes=15)
MAX_CHAINED_INVOKE_BYTES = 1024 * 1024


@retry_transient
def checkpoint(
    arn: str,
    token: str,
    updates: list[dict[str, Any]],
    client_token: str | None = None,
    *,
    ts: TimestampFormat = as_datetime,
) -> dict[str, Any]:
    """Apply a batch of operation updates; return the CheckpointDurableExecution response.

    Transient database errors are retried (``executions.engine.db_retry``): the batch is
    applied again from scratch, since the failed transaction rolled back. If the
    COMMIT went through before the connection dropped, the retry sees the token's
    sequence already advanced: it returns this attempt's response (``if_commit_lost``);
    a caller repeating the call itself (an HTTP client's retry) gets the remembered
    response with a ClientToken, and InvalidCheckpointToken without one (the
    invocation ends and the next one replays from the committed state).
    """
    if not isinstance(token, str) or not token:
        raise InvalidParameterValue("CheckpointToken is required")
    with transaction.atomic():
        execution, stored = _lock_with_operations(arn, updates)
        if cached := _cached_response(execution, client_token, token):
            return cached
        _check_token(execution, token)
        changes = ChangeSet(execution)
        seen_before = execution.seen_seq
        validate_batch(updates, {op_id: _stored(op) for op_id, op in stored.items()})
        for update in updates:
            _apply(changes, stored, update)
        complete_due_timers(changes)
        delta = _delta(changes, seen_before)
        execution.seen_seq = execution.change_seq
        execution.checkpoint_seq += 1
        response = _response(execution, delta, ts)
        extra = ["checkpoint_seq"]
        if client_token:
            _remember(execution, client_token, token, _response(execution, delta, as_epoch_seconds))
            extra += ["last_client_token", "last_inbound_token", "last_response", "last_client_token_at"]
        commit_changes(changes, extra_fields=tuple(extra))
        # Only this invocation holds the token, so the sequence it moves to says whether it committed.
        if_commit_lost(
            response, partial(_advanced, execution.pk, execution.invocation_count, execution.checkpoint_seq)
        )
    return response


def _advanced(execution_id: int, invocation: int, seq: int) -> bool:
    return Execution.objects.filter(pk=execution_id, invocation_count=invocation, checkpoint_seq=seq).exists()


def lock_execution(arn: str) -> Execution:
    found = rows(Execution).select("arn = %s", [arn], for_update=True)
    if not found:
        raise ResourceNotFound(f"Durable execution not found: {arn}")
    return found[0]


def _check_token(execution: Execution, token: str) -> None:
    parsed = CheckpointToken.decode(token)
    if parsed.execution_id != execution.pk:
        raise InvalidCheckpointToken("token belongs to another execution")
    if execution.is_terminal:
        raise InvalidCheckpointToken("execution is closed")
    if parsed.invocation != execution.invocation_count or not execution.lease_owner:
        raise InvalidCheckpointToken("token from a superseded invocation")
    if parsed.seq != execution.checkpoint_seq:
        raise InvalidCheckpointToken("stale sequence")


def current_token(execution: Execution) -> str:
    return CheckpointToken(execution.pk, execution.invocation_count, execution.checkpoint_seq).encode()


def _cached_response(execution: Execution, client_token: str | None, token: str) -> dict[str, Any] | None:
    if not client_token:
        return None
    if not 1 <= len(client_token) <= 64 or not all(33 <= ord(c) <= 126 for c in client_token):
        raise InvalidParameterValue("ClientToken must be 1-64 printable characters")
    fresh = (
        execution.last_client_token_at is not None
        and clock.now() - execution.last_client_token_at < CLIENT_TOKEN_WINDOW
    )
    if (
        fresh
        and execution.last_client_token == client_token
        and execution.last_inbound_token == token
        and execution.last_response is not None
    ):
        return cast(dict[str, Any], execution.last_response)
    return None


def _remember(execution: Execution, client_token: str, token: str, response: dict[str, Any]) -> None:
    if "CheckpointToken" not in response:
        return  # token-less (paused or closing) responses are not replayed
    execution.last_client_token = client_token
    execution.last_inbound_token = token
    execution.last_response = response
    execution.last_client_token_at = clock.now()


def _lock_with_operations(arn: str, updates: list[Any]) -> tuple[Execution, dict[str, Operation]]:
    """Lock the execution row and read the operations the batch names, in one round trip."""
    ids = sorted(_named_operation_ids(updates))
    queries = [rows(Execution).query("arn = %s", [arn], for_update=True)]
    if ids:
        placeholders = ", ".join(["%s"] * len(ids))
        queries.append(
            rows(Operation).query(
                "execution_id = (SELECT id FROM executions_execution WHERE arn = %s)"
                f" AND operation_id IN ({placeholders})",
                [arn, *ids],
            )
        )
    found = select_many(queries)
    if not found[0]:
        raise ResourceNotFound(f"Durable execution not found: {arn}")
    operations = found[1] if ids else []
    return found[0][0], {op.operation_id: op for op in operations}


def _named_operation_ids(updates: Any) -> set[str]:
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


# --- applying updates ----------------------------------------------------------------


def _apply(changes: ChangeSet, stored: dict[str, Operation], update: dict[str, Any]) -> None:
    op_type = update["Type"]
    if op_type == "EXECUTION":
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
                    "status": "STARTED",
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
    if action == "START":
        op.status = "STARTED"
        op.error = None
        changes.event("StepStarted", op)
        return
    op.attempt += 1
    if action == "RETRY":
        delay = update["StepOptions"]["NextAttemptDelaySeconds"]
        op.status = "PENDING"
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
    if action == "SUCCEED":
        op.status = "SUCCEEDED"
        op.result = update.get("Payload")
        op.error = None
        changes.event("StepSucceeded", op, Result=wrap_payload(op.result), RetryDetails=retry)
    else:
        op.status = "FAILED"
        op.error = update.get("Error")
        changes.event("StepFailed", op, Error=wrap_payload(op.error or {}), RetryDetails=retry)


def _apply_context(changes: ChangeSet, op: Operation, update: dict[str, Any]) -> None:
    action = update["Action"]
    if action == "START":
        op.status = "STARTED"
        changes.event("ContextStarted", op)
        return
    op.ended_at = changes.now
    options = update.get("ContextOptions") or {}
    op.replay_children = bool(options.get("ReplayChildren"))
    if action == "SUCCEED":
        op.status = "SUCCEEDED"
        op.result = update.get("Payload")
        changes.event("ContextSucceeded", op, Result=wrap_payload(op.result))
    else:
        op.status = "FAILED"
        op.error = update.get("Error")
        changes.event("ContextFailed", op, Error=wrap_payload(op.error or {}))


def _apply_wait(changes: ChangeSet, op: Operation, update: dict[str, Any]) -> None:
    if update["Action"] == "CANCEL":
        op.status = "CANCELLED"
        op.ended_at = changes.now
        changes.set_timer(op, None)
        changes.event("WaitCancelled", op)
        return
    seconds = update["WaitOptions"]["WaitSeconds"]
    op.status = "STARTED"
    op.wait_seconds = seconds
    op.scheduled_end_at = changes.now + datetime.timedelta(seconds=seconds)
    changes.set_timer(op, op.scheduled_end_at)
    changes.event("WaitStarted", op, Duration=seconds, ScheduledEndTimestamp=epoch(op.scheduled_end_at))


def _apply_callback(changes: ChangeSet, op: Operation, update: dict[str, Any]) -> None:
    options = update.get("CallbackOptions") or {}
    timeout = options.get("TimeoutSeconds") or 0
    heartbeat = options.get("HeartbeatTimeoutSeconds") or 0
    op.status = "STARTED"
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
    op.status = "STARTED"
    op.invoke_function_name = reference
    op.invoke_tenant_id = options.get("TenantId") or ""
    try:
        target, qualifier = function_resolve(reference)
        if not target.enabled:
            raise ResourceNotFound(f"Function {target.name} is disabled.")
    except ServiceError as exc:
        # Unresolvable targets fail in this same response and store no input.
        changes.event("ChainedInvokeStarted", op, **_invoke_target(op))
        op.status = "FAILED"
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
        changes.after_commit.append(("plain_invoke", (changes.execution.pk, op.operation_id)))
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
    if update["Action"] == "SUCCEED":
        close_execution(changes, ExecutionStatus.SUCCEEDED, result=update.get("Payload") or "")
    else:
        close_execution(changes, ExecutionStatus.FAILED, error=update.get("Error") or {})


APPLIERS = {
    "STEP": _apply_step,
    "CONTEXT": _apply_context,
    "WAIT": _apply_wait,
    "CALLBACK": _apply_callback,
    "CHAINED_INVOKE": _apply_chained_invoke,
}


# --- responses ------------------------------------------------------------------------


def _delta(changes: ChangeSet, seen_before: int) -> list[Operation]:
    """Operations the handler has not seen: this batch plus asynchronous changes."""
    touched = {op.operation_id: op for op in changes.touched_operations()}
    if seen_before < changes.start_seq:
        for op in Operation.objects.filter(execution=changes.execution, touched_seq__gt=seen_before).exclude(
            operation_id__in=list(touched)
        ):
            touched[op.operation_id] = op
    return sorted(touched.values(), key=lambda op: op.position)


def _response(execution: Execution, delta: list[Operation], ts: TimestampFormat) -> dict[str, Any]:
    response: dict[str, Any] = {
        "NewExecutionState": {"Operations": [operation_to_wire(op, ts) for op in delta]}
    }
    # No token when closed (the SDK settles) or paused (the SDK suspends, docs/api.md).
    if execution.status == ExecutionStatus.RUNNING:
        response["CheckpointToken"] = current_token(execution)
    return response


# --- state paging -------------------------------------------------------------------------


@retry_transient
def get_state(
    arn: str,
    token: str,
    marker: str | None = None,
    max_items: int | None = None,
    *,
    ts: TimestampFormat = as_datetime,
) -> dict[str, Any]:
    """GetDurableExecutionState: operations by start order, paged, for the current token.

    Only reads, so transient database errors are simply retried.
    """
    execution = Execution.objects.filter(arn=arn).first()
    if execution is None:
        raise ResourceNotFound(f"Durable execution not found: {arn}")
    _check_token(execution, token)
    offset = decode_marker(marker) if marker else 0
    limit = page_limit(max_items)
    ops = list(
        Operation.objects.filter(execution=execution).order_by("position")[offset : offset + limit + 1]
    )
    response: dict[str, Any] = {
        "Operations": [operation_to_wire(op, ts) for op in ops[:limit]],
    }
    if len(ops) > limit:
        response["NextMarker"] = encode_marker(offset + limit)
    return response


def page_limit(max_items: int | None) -> int:
    if max_items is not None and (max_items < 0 or max_items > 1000):
        raise InvalidParameterValue("MaxItems must be between 0 and 1000")
    requested = max_items or 100
    return max(1, min(requested, settings.DURABLE_STATE_PAGE_SIZE))
