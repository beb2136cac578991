"""Side-by-side diffs: a step's attempts (n against n-1) and two executions of one function.

The history keeps one ``StepFailed`` event per failed attempt (with its
``RetryDetails``) and a final ``StepSucceeded``, so every attempt's error or
result is still there to compare; no other console shows this.
"""

from __future__ import annotations

import datetime
import difflib
import itertools
import json
from dataclasses import dataclass
from typing import Any

from executions.models import Execution, HistoryEvent, Operation
from executions.vocabulary import OperationType

ATTEMPT_EVENTS = ("StepFailed", "StepSucceeded")


@dataclass(frozen=True)
class DiffRow:
    kind: str  # "same", "chg", "add", "del"
    left_no: int | None
    left: str
    right_no: int | None
    right: str


def pretty(value: Any) -> str:
    """JSON (text or value) as stable, indented text; other text as it is."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):  # not JSON, or nested too deeply to parse here
            return value
    try:
        return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    except RecursionError:
        return str(value)


def side_by_side(left: str, right: str) -> list[DiffRow]:
    """Line-aligned rows of two texts, marking changed, added and removed lines."""
    a, b = left.splitlines(), right.splitlines()
    rows: list[DiffRow] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            pairs = zip(range(i1, i2), range(j1, j2), strict=True)
            rows += [DiffRow("same", i + 1, a[i], j + 1, b[j]) for i, j in pairs]
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            i, j = i1 + k, j1 + k
            has_left, has_right = i < i2, j < j2
            kind = "chg" if has_left and has_right else ("del" if has_left else "add")
            rows.append(
                DiffRow(
                    kind,
                    i + 1 if has_left else None,
                    a[i] if has_left else "",
                    j + 1 if has_right else None,
                    b[j] if has_right else "",
                )
            )
    return rows


# --- a step's attempts ------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    number: int
    outcome: str  # "FAILED" or "SUCCEEDED"
    at: datetime.datetime
    text: str  # the error (failed) or the result (succeeded), pretty-printed
    next_delay: int | None


@dataclass(frozen=True)
class AttemptPair:
    previous: Attempt
    current: Attempt
    rows: list[DiffRow]


def step_attempts(execution: Execution, operation_id: str) -> list[Attempt]:
    """Every finished attempt of one step, from its history events, oldest first."""
    events = HistoryEvent.objects.filter(
        execution=execution, operation_id=operation_id, event_type__in=ATTEMPT_EVENTS
    ).order_by("event_id")
    attempts = []
    for number, event in enumerate(events, start=1):
        retry = event.details.get("RetryDetails") or {}
        failed = event.event_type == "StepFailed"
        payload = (event.details.get("Error" if failed else "Result") or {}).get("Payload")
        attempts.append(
            Attempt(
                number=retry.get("CurrentAttempt") or number,
                outcome="FAILED" if failed else "SUCCEEDED",
                at=event.timestamp,
                text=pretty(payload),
                next_delay=retry.get("NextAttemptDelaySeconds"),
            )
        )
    return attempts


def attempt_pairs(attempts: list[Attempt]) -> list[AttemptPair]:
    """Attempt n against attempt n-1, newest first (the latest change is what operators want)."""
    pairs = [
        AttemptPair(previous, current, side_by_side(previous.text, current.text))
        for previous, current in itertools.pairwise(attempts)
    ]
    return pairs[::-1]


# --- two executions ---------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutionDiff:
    input: list[DiffRow]
    outcome: list[DiffRow]
    operations: list[DiffRow]


def outcome_text(execution: Execution) -> str:
    if execution.error is not None:
        return f"{execution.status}\n" + pretty(execution.error)
    return f"{execution.status}\n" + pretty(execution.result)


def operation_lines(execution: Execution) -> str:
    """One line per operation, indented by nesting: what ran, in which order, how it ended."""
    ops = list(
        Operation.objects.filter(execution=execution)
        .exclude(type=OperationType.EXECUTION)
        .only("operation_id", "parent_id", "name", "type", "sub_type", "status", "attempt")
        .order_by("position")
    )
    depth: dict[str, int] = {}
    lines = []
    for op in ops:
        depth[op.operation_id] = depth.get(op.parent_id, -1) + 1 if op.parent_id else 0
        kind = op.sub_type or op.type
        attempts = f" ({op.attempt} attempts)" if op.type == OperationType.STEP and op.attempt > 1 else ""
        lines.append(f"{'  ' * depth[op.operation_id]}{kind} {op.name or '(unnamed)'}: {op.status}{attempts}")
    return "\n".join(lines)


def execution_diff(left: Execution, right: Execution) -> ExecutionDiff:
    return ExecutionDiff(
        input=side_by_side(pretty(left.input_payload), pretty(right.input_payload)),
        outcome=side_by_side(outcome_text(left), outcome_text(right)),
        operations=side_by_side(operation_lines(left), operation_lines(right)),
    )
