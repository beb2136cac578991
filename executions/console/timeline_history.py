"""What the operation rows no longer say: redrives, the runs before them, completions by hand.

A redrive deletes the failed operations (and the contexts around them) and the
handler runs them again from attempt 1; the history keeps every event of the
earlier run, and the execution's terminal event (``ExecutionFailed``,
``ExecutionTimedOut``) followed by more events is where a redrive happened. The
audit log adds who redrove and why, and who completed a callback by hand.

Queries only when there can be something to find: the history is read only when
the execution's timeout was moved (a redrive gives a fresh one; a pause that
stopped the clock also moves it, which costs one query for nothing), the audit
log only when there was a redrive or a callback ended.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.utils.html import format_html
from django.utils.safestring import SafeString

from executions.console.diffs import numbered_attempts
from executions.console.formatting import error_message, time_tag, utc_text
from executions.models import AuditChannel, AuditEntry, Execution, HistoryEvent, Operation
from executions.vocabulary import OperationStatus, OperationType

REDRIVE_ACTION = "execution.redrive"
CALLBACK_ACTIONS = ("callback.succeed", "callback.fail")
TERMINAL_EXECUTION_EVENTS = ("ExecutionFailed", "ExecutionTimedOut")
FAILED_STATUSES = frozenset(
    {OperationStatus.FAILED, OperationStatus.TIMED_OUT, OperationStatus.STOPPED, OperationStatus.CANCELLED}
)
# History event type = operation type prefix + outcome suffix (engine/transitions.py).
_TYPE_PREFIXES = (
    ("ChainedInvoke", OperationType.CHAINED_INVOKE),
    ("Callback", OperationType.CALLBACK),
    ("Context", OperationType.CONTEXT),
    ("Step", OperationType.STEP),
    ("Wait", OperationType.WAIT),
)
_SUFFIXES = (
    ("Started", OperationStatus.STARTED),
    ("Succeeded", OperationStatus.SUCCEEDED),
    ("Failed", OperationStatus.FAILED),
    ("TimedOut", OperationStatus.TIMED_OUT),
    ("Stopped", OperationStatus.STOPPED),
    ("Cancelled", OperationStatus.CANCELLED),
)


@dataclass(frozen=True, slots=True)
class Redrive:
    """One redrive: when, by whom (when the audit log says), and the last event before it."""

    at: datetime.datetime
    boundary_event_id: int
    actor: str = ""
    channel: str = ""
    reason: str = ""

    @property
    def title(self) -> str:
        """For a tooltip (plain text: UTC, labelled, as every time's title is)."""
        why = f": {self.reason}" if self.reason else ""
        return f"Redriven{self._who} at {utc_text(self.at)}{why}"

    @property
    def summary(self) -> SafeString:
        """For the page: the time as the console's one time tag (the browser's zone, UTC on hover)."""
        why = f": {self.reason}" if self.reason else ""
        return format_html("Redriven{} {}{}", self._who, time_tag(self.at), why)

    @property
    def _who(self) -> str:
        return f" by {self.actor} ({self.channel})" if self.actor else ""


@dataclass(frozen=True, slots=True)
class EarlierRun:
    """An operation's runs before the latest redrive reset it, from the history."""

    started_at: datetime.datetime
    ended_at: datetime.datetime
    status: str  # how the last of them ended: FAILED, TIMED_OUT, ...
    attempt: int  # a step's attempts before the redrive, counted across earlier redrives (0: not a step)
    failed_attempts: int
    error: str

    @property
    def label(self) -> str:
        """ "attempt 1 · failed before the redrive", "attempts 1-3 · …"; "timed out before the redrive"."""
        return before_redrive_label(self.status, self.attempt)


def before_redrive_label(status: str, attempts: int) -> str:
    """How a run that ended before the redrive reads: its attempts (steps), then how it ended."""
    ended = f"{status.lower().replace('_', ' ')} before the redrive"
    if attempts <= 0:
        return ended
    return f"attempt 1 · {ended}" if attempts == 1 else f"attempts 1-{attempts} · {ended}"


@dataclass(frozen=True, slots=True)
class HandCompletion:
    """A callback completed by a person through the console or the CLI (from the audit log)."""

    actor: str
    channel: str
    at: datetime.datetime
    succeeded: bool

    @property
    def label(self) -> str:
        if self.channel == AuditChannel.API:  # a key's call, not a person's click
            return f"completed through the API by {self.actor}"
        return f"completed by hand by {self.actor} ({self.channel})"


@dataclass
class ExecutionStory:
    redrives: list[Redrive] = field(default_factory=list)
    earlier: dict[str, EarlierRun] = field(default_factory=dict)  # by operation id
    ghosts: list[Operation] = field(default_factory=list)  # failed before a redrive, not run since
    completions: dict[str, HandCompletion] = field(default_factory=dict)  # by operation id


def maybe_redriven(execution: Execution) -> bool:
    """Whether the execution's timeout is later than its start gave it (a redrive renews it)."""
    if execution.timeout_at is None or execution.started_at is None:
        return False
    first = execution.started_at + datetime.timedelta(seconds=execution.execution_timeout)
    return execution.timeout_at > first + datetime.timedelta(milliseconds=1)


def execution_story(execution: Execution, operations: Iterable[Operation]) -> ExecutionStory:
    """Redrives, earlier runs and hand completions of ``execution`` (``operations``: its current ones)."""
    ops = {op.operation_id: op for op in operations}
    story = ExecutionStory()
    events = _history(execution) if maybe_redriven(execution) else []
    boundaries = _boundaries(events)
    ended_callbacks = any(
        op.type == OperationType.CALLBACK and op.status not in (OperationStatus.STARTED,)
        for op in ops.values()
    )
    entries = _audit(execution) if boundaries or ended_callbacks else []
    story.redrives = _redrives(boundaries, events, [e for e in entries if e.action == REDRIVE_ACTION])
    if story.redrives:
        story.earlier, story.ghosts = _earlier_runs(events, story.redrives[-1].boundary_event_id, ops)
    story.completions = _completions(entries)
    return story


def _history(execution: Execution) -> list[HistoryEvent]:
    return list(
        HistoryEvent.objects.filter(execution=execution)
        .exclude(event_type="InvocationCompleted")
        .only(
            "event_id", "event_type", "operation_id", "name", "parent_id", "sub_type", "timestamp", "details"
        )
        .order_by("event_id")
    )


def _audit(execution: Execution) -> list[AuditEntry]:
    return list(
        AuditEntry.objects.filter(target=execution.arn, action__in=(REDRIVE_ACTION, *CALLBACK_ACTIONS))
        .only("actor_name", "channel", "action", "details", "created_at")
        .order_by("created_at", "id")
    )


def _boundaries(events: list[HistoryEvent]) -> list[HistoryEvent]:
    """Terminal execution events that more events follow: each is the end of a run that was redriven."""
    last = events[-1].event_id if events else 0
    return [e for e in events if e.event_type in TERMINAL_EXECUTION_EVENTS and e.event_id < last]


def _redrives(
    boundaries: list[HistoryEvent], events: list[HistoryEvent], entries: list[AuditEntry]
) -> list[Redrive]:
    """One per boundary; the n-th redrive audit entry after a boundary names who and why."""
    redrives = []
    for boundary in boundaries:
        entry = next((e for e in entries if e.created_at >= boundary.timestamp), None)
        if entry is not None:
            entries = entries[entries.index(entry) + 1 :]
            at = entry.created_at
        else:  # redriven without an audit entry (the services, directly): the next event's time
            at = next(e.timestamp for e in events if e.event_id > boundary.event_id)
        redrives.append(
            Redrive(
                at=at,
                boundary_event_id=boundary.event_id,
                actor=entry.actor_name if entry else "",
                channel=entry.channel if entry else "",
                reason=str((entry.details or {}).get("reason") or "") if entry else "",
            )
        )
    return redrives


def _earlier_runs(
    events: list[HistoryEvent], boundary: int, ops: dict[str, Operation]
) -> tuple[dict[str, EarlierRun], list[Operation]]:
    """Operations whose last event before the latest redrive was a failure.

    Those run again since (events after the boundary) get their earlier run; those
    not in the operations any more (not reached again yet, or the handler took
    another path) come back as ghost rows, so the failure that led to the redrive
    stays on the timeline.
    """
    before: dict[str, list[HistoryEvent]] = {}
    ran_again: set[str] = set()
    for event in events:
        if not event.operation_id or event.event_type.startswith("Execution"):
            continue
        if event.event_id < boundary:
            before.setdefault(event.operation_id, []).append(event)
        else:
            ran_again.add(event.operation_id)
    earlier: dict[str, EarlierRun] = {}
    ghosts: list[Operation] = []
    for op_id, op_events in before.items():
        last_type, status = _type_and_status(op_events[-1].event_type)
        if status not in FAILED_STATUSES:
            continue
        run = _run(op_events, status, step=last_type == OperationType.STEP)
        if op_id in ops and op_id in ran_again:
            earlier[op_id] = run
        elif op_id not in ops:
            ghosts.append(_ghost(op_events, last_type, run))
    return earlier, ghosts


def _type_and_status(event_type: str) -> tuple[str, str]:
    op_type = next((t for prefix, t in _TYPE_PREFIXES if event_type.startswith(prefix)), "")
    status = next((s for suffix, s in _SUFFIXES if event_type.endswith(suffix)), "")
    return op_type, status


def _run(op_events: list[HistoryEvent], status: str, *, step: bool) -> EarlierRun:
    failures = [e for e in op_events if _type_and_status(e.event_type)[1] in FAILED_STATUSES]
    last = op_events[-1]
    error = ((last.details or {}).get("Error") or {}).get("Payload")
    # A step's attempts before the redrive, numbered as the attempts page numbers them.
    numbered = numbered_attempts(op_events) if step else []
    return EarlierRun(
        started_at=op_events[0].timestamp,
        ended_at=last.timestamp,
        status=status,
        attempt=(numbered[-1][1] if numbered else max(len(failures), 1)) if step else 0,
        failed_attempts=len(failures),
        error=error_message(error),
    )


def _ghost(op_events: list[HistoryEvent], op_type: str, run: EarlierRun) -> Operation:
    """An unsaved Operation standing for one that failed before the redrive and is gone since."""
    first, last = op_events[0], op_events[-1]
    return Operation(
        operation_id=first.operation_id,
        parent_id=first.parent_id,
        name=first.name,
        type=op_type,
        sub_type=first.sub_type,
        status=run.status,
        started_at=run.started_at,
        ended_at=run.ended_at,
        attempt=run.attempt if op_type == OperationType.STEP else 0,
        error=((last.details or {}).get("Error") or {}).get("Payload"),
        position=0,
    )


def _completions(entries: list[AuditEntry]) -> dict[str, HandCompletion]:
    """Callback completions by hand, by operation id (entries that name their operation)."""
    found: dict[str, HandCompletion] = {}
    for entry in entries:
        op_id = (entry.details or {}).get("operation") if entry.action in CALLBACK_ACTIONS else None
        if isinstance(op_id, str) and op_id:
            found[op_id] = HandCompletion(
                actor=entry.actor_name,
                channel=entry.channel,
                at=entry.created_at,
                succeeded=entry.action == "callback.succeed",
            )
    return found


SDK_CALLBACK_SUFFIX = "create callback id"


def callback_label(op: Operation, parent: Operation | None) -> str:
    """A callback's own name: the SDK names the CALLBACK of ``wait_for_callback(name=N)``
    "N create callback id" inside a context named N; the context's name is the one people gave."""
    name = op.name or ""
    if op.type != OperationType.CALLBACK or not name.endswith(SDK_CALLBACK_SUFFIX):
        return name or op.operation_id
    if parent is not None and parent.name:
        return parent.name
    return callback_name(name)


def callback_name(name: str) -> str:
    """ "verify-email create callback id" -> "verify-email" (the name of its wait_for_callback)."""
    if not name.endswith(SDK_CALLBACK_SUFFIX):
        return name
    return name.removesuffix(SDK_CALLBACK_SUFFIX).strip() or "callback"
