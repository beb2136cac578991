"""The side panel of one timeline row: everything about one operation, in a bounded number of queries.

What it reads, whatever the execution's size: the operation, its parent (a
callback's own name), how its children ended (contexts), its history events
(attempts, earlier runs before a redrive), the child execution of a chained
invoke, the approval or verification of a callback and who completed it by hand.
"""

from __future__ import annotations

import datetime
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from approvals.selectors import decisions_for_operations
from executions.console.diffs import Attempt, attempts_from_events, readable_error
from executions.console.payloads import Decoded, decode_payload
from executions.console.timeline import kind_of
from executions.console.timeline_history import (
    CALLBACK_ACTIONS,
    FAILED_STATUSES,
    HandCompletion,
    callback_label,
)
from executions.models import AuditEntry, Execution, HistoryEvent, Operation
from executions.vocabulary import OperationStatus, OperationType


@dataclass(frozen=True)
class ErrorView:
    type: str
    message: str
    data: Decoded | None
    stack_trace: str
    raw: Any


@dataclass(frozen=True)
class OperationPanel:
    execution: Execution
    op: Operation
    label: str
    kind: str
    parent: Operation | None
    input: Decoded | None
    result: Decoded | None
    error: ErrorView | None
    attempts: list[Attempt]
    runs: int  # 1, or more when a redrive ran it again
    events: list[HistoryEvent]
    children: int = 0
    failed_children: int = 0
    child_execution: Execution | None = None
    decision: Any = None  # approvals.selectors.DecisionSummary
    completion: HandCompletion | None = None
    timestamps: list[tuple[str, datetime.datetime]] = field(default_factory=list)

    @property
    def diffable(self) -> bool:
        """A step with two finished attempts has an attempts diff page."""
        return self.op.type == OperationType.STEP and len(self.attempts) >= 2


def operation_panel(execution: Execution, op: Operation) -> OperationPanel:
    parent = _parent(execution, op)
    events = list(
        HistoryEvent.objects.filter(execution=execution, operation_id=op.operation_id)
        .exclude(event_type="InvocationCompleted")
        .order_by("event_id")
    )
    children, failed = _children(execution, op) if op.type == OperationType.CONTEXT else (0, 0)
    attempts = attempts_from_events(events) if op.type == OperationType.STEP else []
    return OperationPanel(
        execution=execution,
        op=op,
        label=callback_label(op, parent),
        kind=kind_of(op),
        parent=parent,
        input=decode_payload(op.input_payload) if op.input_payload else None,
        result=decode_payload(op.result) if op.result is not None else None,
        error=error_view(op.error),
        attempts=attempts,
        runs=max((a.run for a in attempts), default=1),
        events=events,
        children=children,
        failed_children=failed,
        child_execution=_child_execution(execution, op),
        decision=decisions_for_operations([op]).get(op.pk) if op.type == OperationType.CALLBACK else None,
        completion=_completion(execution, op),
        timestamps=_timestamps(op),
    )


def error_view(error: Any) -> ErrorView | None:
    """An error object for display: its ``ErrorData`` decoded, its stack trace as lines."""
    if not error:
        return None
    if not isinstance(error, dict):
        return ErrorView("", str(error), None, "", error)
    trace = error.get("StackTrace")
    lines = (
        "\n".join(str(line).rstrip("\n") for line in trace) if isinstance(trace, list) else str(trace or "")
    )
    data = error.get("ErrorData")
    return ErrorView(
        type=str(error.get("ErrorType") or ""),
        message=str(error.get("ErrorMessage") or ""),
        data=decode_payload(data) if data is not None else None,
        stack_trace=lines,
        raw=readable_error(error),
    )


def _parent(execution: Execution, op: Operation) -> Operation | None:
    if not op.parent_id:
        return None
    return (
        Operation.objects.filter(execution=execution, operation_id=op.parent_id)
        .only("operation_id", "name", "type", "sub_type", "status")
        .first()
    )


def _children(execution: Execution, op: Operation) -> tuple[int, int]:
    """How many direct children, and how many of them failed (one query, statuses only)."""
    statuses = Counter(
        Operation.objects.filter(execution=execution, parent_id=op.operation_id).values_list(
            "status", flat=True
        )
    )
    return sum(statuses.values()), sum(n for status, n in statuses.items() if status in FAILED_STATUSES)


def _child_execution(execution: Execution, op: Operation) -> Execution | None:
    if op.type != OperationType.CHAINED_INVOKE:
        return None
    return (
        Execution.objects.filter(parent=execution, parent_operation_id=op.operation_id)
        .only("pk", "name", "status", "function_id")
        .first()
    )


def _completion(execution: Execution, op: Operation) -> HandCompletion | None:
    if op.type != OperationType.CALLBACK or op.status == OperationStatus.STARTED:
        return None
    entry = (
        AuditEntry.objects.filter(
            target=execution.arn, action__in=CALLBACK_ACTIONS, details__operation=op.operation_id
        )
        .order_by("-created_at")
        .first()
    )
    if entry is None:
        return None
    return HandCompletion(
        entry.actor_name, entry.channel, entry.created_at, entry.action == "callback.succeed"
    )


def _timestamps(op: Operation) -> list[tuple[str, datetime.datetime]]:
    moments = [
        ("Started", op.started_at),
        ("Ended", op.ended_at),
        (
            "Next attempt",
            op.next_attempt_at if op.status in (OperationStatus.PENDING, OperationStatus.READY) else None,
        ),
        ("Wait ends", op.scheduled_end_at),
        ("Callback times out", op.callback_timeout_at),
        ("Heartbeat due", op.callback_heartbeat_at),
    ]
    return [(label, moment) for label, moment in moments if moment is not None]
