"""Rows to wire shapes: the Lambda ``Operation`` and history ``Event`` structures.

Two timestamp conventions exist (docs/api.md pitfall 4): the in-process
client hands the SDK ``datetime`` objects, the REST API sends epoch seconds.
Callers pass the converter they need.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from executions.engine.callback_ids import callback_id_for
from executions.engine.plain_names import CALLBACK, CHAINED_INVOKE, CONTEXT, EXECUTION, STEP, WAIT
from executions.models import HistoryEvent, Operation

TimestampFormat = Callable[[datetime.datetime], Any]


def as_datetime(value: datetime.datetime) -> datetime.datetime:
    return value


def as_epoch_seconds(value: datetime.datetime) -> float:
    return value.timestamp()


def operation_to_wire(op: Operation, ts: TimestampFormat = as_datetime) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "Id": op.operation_id,
        "Type": op.type,
        "Status": op.status,
        "StartTimestamp": ts(op.started_at),
    }
    if op.parent_id:
        wire["ParentId"] = op.parent_id
    if op.name:
        wire["Name"] = op.name
    if op.sub_type:
        wire["SubType"] = op.sub_type
    if op.ended_at:
        wire["EndTimestamp"] = ts(op.ended_at)
    details_key, details = _details(op, ts)
    if details_key:
        wire[details_key] = details
    return wire


def _details(op: Operation, ts: TimestampFormat) -> tuple[str, dict[str, Any]]:
    if op.type == EXECUTION:
        return "ExecutionDetails", {"InputPayload": op.input_payload or ""}
    if op.type == STEP:
        step: dict[str, Any] = {"Attempt": op.attempt}
        if op.next_attempt_at:
            step["NextAttemptTimestamp"] = ts(op.next_attempt_at)
        _put_outcome(step, op)
        return "StepDetails", step
    if op.type == WAIT:
        wait = {"ScheduledEndTimestamp": ts(op.scheduled_end_at)} if op.scheduled_end_at else {}
        return "WaitDetails", wait
    if op.type == CALLBACK:
        callback: dict[str, Any] = {"CallbackId": callback_id_for(op.callback_seed)}
        _put_outcome(callback, op)
        return "CallbackDetails", callback
    if op.type == CONTEXT:
        context: dict[str, Any] = {}
        _put_outcome(context, op)
        if op.replay_children:
            context["ReplayChildren"] = True
        return "ContextDetails", context
    if op.type == CHAINED_INVOKE:
        invoke: dict[str, Any] = {}
        _put_outcome(invoke, op)
        return "ChainedInvokeDetails", invoke
    return "", {}


def _put_outcome(details: dict[str, Any], op: Operation) -> None:
    if op.result is not None:
        details["Result"] = op.result
    if op.error is not None:
        details["Error"] = op.error


def event_to_wire(
    event: HistoryEvent, ts: TimestampFormat = as_epoch_seconds, include_data: bool = True
) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "EventType": event.event_type,
        "EventId": event.event_id,
        "EventTimestamp": ts(event.timestamp),
    }
    if event.sub_type:
        wire["SubType"] = event.sub_type
    if event.operation_id:
        wire["Id"] = event.operation_id
    if event.name:
        wire["Name"] = event.name
    if event.parent_id:
        wire["ParentId"] = event.parent_id
    details = _event_details(event.details, ts, include_data)
    wire[f"{event.event_type}Details"] = details
    return wire


_TIMESTAMP_KEYS = frozenset(
    {
        "ScheduledEndTimestamp",
        "StartTimestamp",
        "EndTimestamp",
        "PauseRequestTimestamp",
        "ResumeRequestTimestamp",
    }
)
_PAYLOAD_KEYS = frozenset({"Input", "Result", "Error", "Reason"})


def _event_details(details: dict[str, Any], ts: TimestampFormat, include_data: bool) -> dict[str, Any]:
    """Stored details keep timestamps as epoch seconds and payloads in wrappers."""
    rendered: dict[str, Any] = {}
    for key, value in details.items():
        if key in _TIMESTAMP_KEYS and isinstance(value, (int, float)):
            rendered[key] = ts(datetime.datetime.fromtimestamp(value, datetime.UTC))
        elif key in _PAYLOAD_KEYS and isinstance(value, dict) and not include_data:
            rendered[key] = {"Truncated": True}
        elif key in _PAYLOAD_KEYS and isinstance(value, dict) and value.get("Payload", "") is None:
            # No payload (a callback completed without a Result) is an absent Payload,
            # not a JSON null: the model's Payload is a string.
            rendered[key] = {k: v for k, v in value.items() if k != "Payload"}
        else:
            rendered[key] = value
    return rendered
