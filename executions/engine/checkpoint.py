"""CheckpointDurableExecution and GetDurableExecutionState (docs/api.md to §2.6).

One checkpoint call is one transaction. A worker's checkpoints first try the fast
path (``executions.engine.checkpoint_fast``: one guarded statement from what the
invocation already knows); every other checkpoint, and every one the fast path
declines, takes the locking path: lock the execution row, check the token,
validate the batch, apply it, complete due timers, compute the delta the SDK
must see, rotate the token. Wake-up hints go out after commit.
"""

from __future__ import annotations

import datetime
from functools import partial
from typing import Any, cast

from django.conf import settings
from django.db import transaction

from executions.engine import clock
from executions.engine.appliers import apply_update
from executions.engine.changes import ChangeSet
from executions.engine.checkpoint_fast import (
    CheckpointCache,
    checkpoint_response,
    current_token,
    named_operation_ids,
    try_checkpoint,
)
from executions.engine.db_retry import if_commit_lost, retry_transient
from executions.engine.errors import InvalidCheckpointToken, InvalidParameterValue, ResourceNotFound
from executions.engine.rows import rows, select_many
from executions.engine.tokens import CheckpointToken, decode_marker, encode_marker
from executions.engine.transitions import commit_changes, complete_due_timers
from executions.engine.validation import StoredOp, validate_batch
from executions.engine.wire import TimestampFormat, as_datetime, as_epoch_seconds, operation_to_wire
from executions.models import Execution, Operation

__all__ = ["CheckpointCache", "checkpoint", "current_token", "get_state", "lock_execution", "page_limit"]

CLIENT_TOKEN_WINDOW = datetime.timedelta(minutes=15)


@retry_transient
def checkpoint(
    arn: str,
    token: str,
    updates: list[dict[str, Any]],
    client_token: str | None = None,
    *,
    ts: TimestampFormat = as_datetime,
    cache: CheckpointCache | None = None,
) -> dict[str, Any]:
    """Apply a batch of operation updates; return the CheckpointDurableExecution response.

    ``cache`` is the calling invocation's ``CheckpointCache`` (workers pass one): with
    it, the fast path may apply the batch in one statement, and the locking path
    leaves what it committed there for the next checkpoint.

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
    if cache is not None and client_token is None:
        if fast := try_checkpoint(cache, arn, token, updates, ts):
            return fast
        cache.forget(named_operation_ids(updates))
    with transaction.atomic():
        execution, stored = _lock_with_operations(arn, updates)
        if cached := _cached_response(execution, client_token, token):
            return cached
        _check_token(execution, token)
        changes = ChangeSet(execution)
        seen_before = execution.seen_seq
        validate_batch(updates, {op_id: _stored(op) for op_id, op in stored.items()})
        for update in updates:
            apply_update(changes, stored, update)
        complete_due_timers(changes)
        delta = _delta(changes, seen_before)
        execution.seen_seq = execution.change_seq
        execution.checkpoint_seq += 1
        response = checkpoint_response(execution, delta, ts)
        extra = ["checkpoint_seq"]
        if client_token:
            _remember(execution, client_token, token, checkpoint_response(execution, delta, as_epoch_seconds))
            extra += ["last_client_token", "last_inbound_token", "last_response", "last_client_token_at"]
        commit_changes(changes, extra_fields=tuple(extra))
        # Only this invocation holds the token, so the sequence it moves to says whether it committed.
        if_commit_lost(
            response, partial(_advanced, execution.pk, execution.invocation_count, execution.checkpoint_seq)
        )
    if cache is not None and "CheckpointToken" in response:
        committed = [*stored.values(), *changes.pending_operations()]
        cache.remember(execution, response["CheckpointToken"], committed)
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
    ids = sorted(named_operation_ids(updates))
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


def _stored(op: Operation) -> StoredOp:
    return StoredOp(op.type, op.sub_type, op.name, op.parent_id, op.status)


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
    after = decode_marker(marker) if marker else 0
    limit = page_limit(max_items)
    # Keyset paging: the marker is the last position of the previous page.
    ops = list(
        Operation.objects.filter(execution=execution, position__gt=after).order_by("position")[: limit + 1]
    )
    response: dict[str, Any] = {
        "Operations": [operation_to_wire(op, ts) for op in ops[:limit]],
    }
    if len(ops) > limit:
        response["NextMarker"] = encode_marker(ops[limit - 1].position)
    return response


def page_limit(max_items: int | None) -> int:
    if max_items is not None and (max_items < 0 or max_items > 1000):
        raise InvalidParameterValue("MaxItems must be between 0 and 1000")
    requested = max_items or 100
    return max(1, min(requested, settings.DURABLE_STATE_PAGE_SIZE))
