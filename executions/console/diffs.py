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
from dataclasses import dataclass, replace
from typing import Any

from executions.console.payloads import decode_payload
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
    """JSON (text or value) as stable, indented text, the SDK's envelopes decoded; other text as it is."""
    if value is None:
        return ""
    decoded = decode_payload(value)
    if not decoded.is_json:  # not JSON, or nested too deeply to parse here
        return decoded.raw
    try:
        return json.dumps(decoded.value, indent=2, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return decoded.raw


def readable_error(error: Any) -> Any:
    """An error object with its ``ErrorData`` decoded (the SDK serializes it like a result)."""
    if isinstance(error, dict) and isinstance(error.get("ErrorData"), str):
        return {**error, "ErrorData": decode_payload(error["ErrorData"]).value}
    return error


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
    number: int  # counted across redrives: the first attempt after a redrive follows the last before it
    outcome: str  # "FAILED" or "SUCCEEDED"
    at: datetime.datetime
    text: str  # the error (failed) or the result (succeeded), decoded and pretty-printed
    next_delay: int | None
    raw: str = ""  # the payload as stored (the SDK's envelope), when decoding changed it
    run: int = 1  # 1, then 2 after the first redrive that ran the step again, ...
    before_redrive: bool = False  # a later run (after a redrive) exists

    @property
    def label(self) -> str:
        """ "attempt 2", or "attempt 2 · failed before the redrive" for an earlier run's attempt."""
        if not self.before_redrive:
            return f"attempt {self.number}"
        return f"attempt {self.number} · {self.outcome.lower()} before the redrive"


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
    return attempts_from_events(list(events))


def attempts_from_events(events: list[HistoryEvent]) -> list[Attempt]:
    """The finished attempts among one step's events (oldest first), split into runs.

    A redrive deletes a failed step and the handler runs it again from attempt 1,
    while the history keeps the earlier attempts: an attempt number that does not
    go up starts a new run, and every attempt of an earlier run is marked. Attempts
    are numbered across runs (two before a redrive, then 3, 4, ...), so no two read "#1".
    """
    found: list[Attempt] = []
    for event, number, run in numbered_attempts(events):
        failed = event.event_type == "StepFailed"
        payload = (event.details.get("Error" if failed else "Result") or {}).get("Payload")
        shown = pretty(readable_error(payload) if failed else payload)
        raw = payload if isinstance(payload, str) else json.dumps(payload, indent=2, ensure_ascii=False)
        retry = event.details.get("RetryDetails") or {}
        found.append(
            Attempt(
                number=number,
                outcome="FAILED" if failed else "SUCCEEDED",
                at=event.timestamp,
                text=shown,
                next_delay=retry.get("NextAttemptDelaySeconds"),
                raw=raw if raw != shown else "",
                run=run,
            )
        )
    last_run = found[-1].run if found else 1
    return [replace(attempt, before_redrive=attempt.run < last_run) for attempt in found]


def numbered_attempts(events: list[HistoryEvent]) -> list[tuple[HistoryEvent, int, int]]:
    """(event, attempt number counted across redrives, run) for each finished attempt among ``events``.

    The SDK numbers attempts from 1 in each run; an attempt number that does not go up is a
    new run, numbered on from the last attempt of the run before.
    """
    out: list[tuple[HistoryEvent, int, int]] = []
    run, previous, offset = 1, 0, 0
    for event in events:
        if event.event_type not in ATTEMPT_EVENTS:
            continue
        retry = (event.details or {}).get("RetryDetails") or {}
        number = int(retry.get("CurrentAttempt") or previous + 1)
        if out and number <= previous:
            run += 1
            offset = out[-1][1]
        previous = number
        out.append((event, offset + number, run))
    return out


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
    # Both inputs as stored, when decoding changed either (a child's input is the SDK's envelope).
    raw_input: tuple[str, str] | None = None


def outcome_text(execution: Execution) -> str:
    if execution.error is not None:
        return f"{execution.status}\n" + pretty(readable_error(execution.error))
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
    inputs = decode_payload(left.input_payload), decode_payload(right.input_payload)
    return ExecutionDiff(
        input=side_by_side(pretty(left.input_payload), pretty(right.input_payload)),
        outcome=side_by_side(outcome_text(left), outcome_text(right)),
        operations=side_by_side(operation_lines(left), operation_lines(right)),
        raw_input=(inputs[0].raw, inputs[1].raw) if any(d.decoded for d in inputs) else None,
    )
