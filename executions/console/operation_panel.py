"""The side panel of one timeline row: everything about one operation, in a bounded number of queries.

What it reads, whatever the execution's size: the operation, its parent (a
callback's own name), how its children ended (contexts), its history events
(attempts, earlier runs before a redrive), the child execution of a chained
invoke, the approval or verification of a callback and who completed it by hand.
"""

from __future__ import annotations

import datetime
from collections import Counter
from dataclasses import dataclass, field, replace
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
    # (label, moment, time style): every one with its date; milliseconds where they tell steps apart.
    timestamps: list[tuple[str, datetime.datetime, str]] = field(default_factory=list)

    @property
    def diffable(self) -> bool:
        """A step with two finished attempts has an attempts diff page."""
        return self.op.type == OperationType.STEP and len(self.attempts) >= 2

    @property
    def attempts_before_redrive(self) -> int:
        """A step's attempts before the latest redrive (the attempts are numbered across it)."""
        return max((a.number for a in self.attempts if a.before_redrive), default=0)

    @property
    def attempt(self) -> int:
        """The step's current attempt, counted across redrives as the attempts table counts."""
        return self.op.attempt + self.attempts_before_redrive


def operation_panel(execution: Execution, op: Operation) -> OperationPanel:
    parent = _parent(execution, op)
    events = list(
        HistoryEvent.objects.filter(execution=execution, operation_id=op.operation_id)
        .exclude(event_type="InvocationCompleted")
        .order_by("event_id")
    )
    children, failed = _children(execution, op) if op.type == OperationType.CONTEXT else (0, 0)
    attempts = _attempts(op, events) if op.type == OperationType.STEP else []
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


def _attempts(op: Operation, events: list[HistoryEvent]) -> list[Attempt]:
    """The step's finished attempts; those that ended before its current run started (the run a
    redrive began) are before the redrive, even while the new run has not finished one yet."""
    return [
        replace(attempt, before_redrive=True) if attempt.at < op.started_at else attempt
        for attempt in attempts_from_events(events)
    ]


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


def _timestamps(op: Operation) -> list[tuple[str, datetime.datetime, str]]:
    """What happened when, and the deadlines still ahead (a callback's only while it waits)."""
    waiting = op.status in (OperationStatus.PENDING, OperationStatus.READY)
    open_callback = op.type == OperationType.CALLBACK and op.status == OperationStatus.STARTED
    moments = [
        ("Started", op.started_at, "datetime-ms"),
        ("Ended", op.ended_at, "datetime-ms"),
        ("Next attempt", op.next_attempt_at if waiting else None, "datetime"),
        ("Wait ends", op.scheduled_end_at, "datetime"),
        ("Callback times out", op.callback_timeout_at if open_callback else None, "datetime"),
        ("Heartbeat due", op.callback_heartbeat_at if open_callback else None, "datetime"),
    ]
    return [(label, moment, style) for label, moment, style in moments if moment is not None]
