"""Read-side queries: GetDurableExecution, operations, history, listings."""

from __future__ import annotations

from typing import Any

from executions.engine.callback_ids import callback_id_for
from executions.engine.errors import InvalidParameterValue, ResourceNotFound
from executions.engine.functions import function_arn
from executions.engine.tokens import decode_marker, encode_marker
from executions.engine.wire import TimestampFormat, as_epoch_seconds, event_to_wire, operation_to_wire
from executions.models import Execution, HistoryEvent, Operation


def execution_get(arn: str) -> Execution:
    execution = Execution.objects.select_related("function").filter(arn=arn).first()
    if execution is None:
        raise ResourceNotFound(f"Durable execution not found: {arn}")
    return execution


def execution_describe(
    execution: Execution, *, include_data: bool = True, ts: TimestampFormat = as_epoch_seconds
) -> dict[str, Any]:
    """The GetDurableExecution response fields."""
    described: dict[str, Any] = {
        "DurableExecutionArn": execution.arn,
        "DurableExecutionName": execution.name,
        "FunctionArn": function_arn(execution.function, str(execution.function_version)),
        "StartTimestamp": ts(execution.started_at),
        "Status": execution.status,
        "Version": str(execution.function_version),
        "ExecutionDataIncluded": include_data,
        "DurableConfig": {
            "RetentionPeriodInDays": execution.function.retention_days,
            "ExecutionTimeout": execution.execution_timeout,
        },
    }
    if include_data:
        described["InputPayload"] = execution.input_payload
        if execution.result is not None:
            described["Result"] = execution.result
        if execution.error is not None:
            described["Error"] = execution.error
    if execution.ended_at:
        described["EndTimestamp"] = ts(execution.ended_at)
    if execution.timeout_at and not execution.is_terminal:
        described["ExpectedExecutionTimeoutTimestamp"] = ts(execution.timeout_at)
    if execution.pause_details:
        details = execution.pause_details
        described["PauseDetails"] = {
            "PauseRequestTimestamp": details["PauseRequestTimestamp"],
            "ExecutionTimeoutPaused": details.get("ExecutionTimeoutPaused", False),
            **({"Reason": details["Reason"]} if details.get("Reason") else {}),
        }
    return described


def execution_operations(
    execution: Execution, ts: TimestampFormat = as_epoch_seconds
) -> list[dict[str, Any]]:
    return [operation_to_wire(op, ts) for op in Operation.objects.filter(execution=execution)]


def execution_history(
    execution: Execution,
    *,
    include_data: bool = True,
    max_items: int | None = None,
    marker: str | None = None,
    reverse: bool = False,
    ts: TimestampFormat = as_epoch_seconds,
) -> dict[str, Any]:
    """GetDurableExecutionHistory: events by id (ReverseOrder = newest first), paged."""
    if max_items is not None and not 0 <= max_items <= 1000:
        raise InvalidParameterValue("MaxItems must be between 0 and 1000")
    limit = max_items or 100
    offset = decode_marker(marker) if marker else 0
    ordering = "-event_id" if reverse else "event_id"
    events = list(
        HistoryEvent.objects.filter(execution=execution).order_by(ordering)[offset : offset + limit + 1]
    )
    response: dict[str, Any] = {
        "Events": [_with_callback_id(event_to_wire(event, ts, include_data)) for event in events[:limit]]
    }
    if len(events) > limit:
        response["NextMarker"] = encode_marker(offset + limit)
    return response


def _with_callback_id(wire: dict[str, Any]) -> dict[str, Any]:
    """CallbackStarted stores the seed; the id is derived when the event is read."""
    details = wire.get("CallbackStartedDetails")
    if details and "CallbackSeed" in details:
        details = dict(details)
        details["CallbackId"] = callback_id_for(details.pop("CallbackSeed"))
        wire["CallbackStartedDetails"] = details
    return wire
