"""The checkpoint timeline: the operation tree as flat rows with time-scaled bars.

The tree comes from ``console_queries.execution_detail_data``; here it becomes
one row per operation, depth-first, each with its nesting depth (the page folds
a context's rows with a little JS) and its bar as percentages of the
execution's span. Flat rows render in one template loop, which keeps the page
of an execution with thousands of operations inside its time budget.

Above the operations runs one lane of invocations on the same time scale: one
mark per handler run, coloured and labelled by how it ended, so a sandbox that
timed out, crashed or ran out of memory (or a worker that died) stands out
next to the operations it interrupted. The invocations table reuses the marks.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from approvals.selectors import decisions_for_operations
from executions.console.formatting import (
    countdown_tag,
    duration,
    error_message,
    payload_size,
    status_class,
    time_tag,
)
from executions.console.timeline_history import (
    FAILED_STATUSES,
    EarlierRun,
    ExecutionStory,
    HandCompletion,
    Redrive,
    before_redrive_label,
    callback_label,
    execution_story,
)
from executions.console.timescale import AxisLabel, Break, TimeScale, build_scale, fit_labels
from executions.models import Execution, Invocation, InvocationOutcome, Operation
from executions.vocabulary import OPEN_OPERATION_STATUSES, OperationStatus, OperationType

# A context with more children than this starts folded (a map over 500 items).
FOLD_CHILDREN_OVER = 25

KIND_LABELS = {
    "Parallel": "PARALLEL",
    "ParallelBranch": "BRANCH",
    "Map": "MAP",
    "MapIteration": "ITEM",
    "WaitForCallback": "WAIT FOR CALLBACK",
    "WaitForCondition": "WAIT FOR CONDITION",
    "RunInChildContext": "CHILD CONTEXT",
}
TYPE_LABELS = {OperationType.CHAINED_INVOKE: "INVOKE", OperationType.CONTEXT: "CONTEXT"}
# The newest invocations the table and the lane show: an execution that waits in a loop
# is invoked once per wake-up, and thousands of marks would only cost page weight.
INVOCATIONS_SHOWN = 200


@dataclass(frozen=True, slots=True)
class OutcomeStyle:
    """How the console shows one way an invocation ended: words first, then glyph and colour.

    The label is the visible (and accessible) text; the glyph is decorative
    (``aria-hidden``) and the colour comes from ``css``, so neither is needed
    to tell outcomes apart.
    """

    label: str
    glyph: str
    css: str
    meaning: str  # the badge's tooltip
    abnormal: bool  # raised, or the sandbox / worker died: the lane marks it with its glyph


# In the order the lane's summary lists them: the sandbox and worker deaths first, as the
# ones an operator is looking for, then raises, then the handler's own returns.
OUTCOME_STYLES: dict[str, OutcomeStyle] = {
    InvocationOutcome.TIMEOUT: OutcomeStyle(
        "timed out", "◔", "inv-timeout", "Ran past the function's Timeout; its sandbox was killed", True
    ),
    InvocationOutcome.CRASH: OutcomeStyle(
        "crashed", "↯", "inv-crash", "The sandbox process exited or was killed by a signal", True
    ),
    InvocationOutcome.OOM: OutcomeStyle(
        "out of memory", "▲", "inv-oom", "Went past the function's MemorySize; its sandbox was killed", True
    ),
    InvocationOutcome.LOST: OutcomeStyle(
        "worker lost", "⌀", "inv-lost", "Its worker stopped renewing the lease (the whole worker died)", True
    ),
    InvocationOutcome.ERROR: OutcomeStyle(
        "raised", "!", "inv-error", "The handler raised an exception", True
    ),
    InvocationOutcome.INVALID: OutcomeStyle(
        "invalid output", "?", "inv-invalid", "Returned something that is not an invocation output", True
    ),
    InvocationOutcome.FAILED: OutcomeStyle("failed", "✗", "inv-failed", "Returned FAILED", False),
    InvocationOutcome.PENDING: OutcomeStyle(
        "pending", "‖", "inv-pending", "Returned PENDING: suspended, to be invoked again", False
    ),
    InvocationOutcome.SUCCEEDED: OutcomeStyle("succeeded", "✓", "inv-succeeded", "Returned SUCCEEDED", False),
}
RUNNING_STYLE = OutcomeStyle("running", "…", "inv-running", "Still running", False)
ENDED_STYLE = OutcomeStyle("ended", "·", "inv-unknown", "Ended; how was not recorded", False)


def outcome_style(invocation: Invocation) -> OutcomeStyle:
    """The style of an invocation's outcome ("running" while it has none)."""
    if not invocation.outcome:
        # Ended without an outcome: a row written before outcomes were recorded.
        return RUNNING_STYLE if invocation.ended_at is None else ENDED_STYLE
    style = OUTCOME_STYLES.get(invocation.outcome)
    # An outcome this console does not know yet (a newer worker) is still shown, in words.
    return style or OutcomeStyle(invocation.outcome.lower(), "·", "inv-unknown", invocation.outcome, True)


@dataclass(frozen=True, slots=True)
class InvocationMark:
    """One invocation: its row in the invocations table and its mark on the timeline's lane."""

    invocation: Invocation
    outcome: OutcomeStyle
    left: float  # % of the execution's span
    width: float
    open_ended: bool  # still running (or never closed): the mark runs to the end of the span

    @property
    def number(self) -> int:
        return self.invocation.number

    @property
    def duration(self) -> str:
        """Ended minus started, or "running"."""
        inv = self.invocation
        return duration(inv.ended_at - inv.started_at) if inv.ended_at else "running"

    @property
    def error_type(self) -> str:
        error = self.invocation.error
        return str(error.get("ErrorType") or "") if isinstance(error, dict) else ""

    @property
    def title(self) -> str:
        """The lane mark's tooltip and accessible name: outcome, error type, duration, worker."""
        inv = self.invocation
        parts = [f"Invocation {inv.number}: {self.outcome.label}"]
        if self.error_type:
            parts.append(self.error_type)
        parts.append(self.duration)
        parts.append(f"worker {inv.worker}" if inv.worker else "worker unknown")
        if inv.memory_used_mb is not None:
            parts.append(f"{inv.memory_used_mb} MB used")
        return " · ".join(parts)

    @property
    def bar_style(self) -> str:
        return f"--l:{self.left:.3f}%;--w:{self.width:.3f}%"


@dataclass(frozen=True, slots=True)
class TimelineRow:
    op: Operation
    depth: int
    children: int
    folded: bool
    kind: str
    left: float  # bar start, % of the span
    width: float  # bar length, % of the span
    open_ended: bool
    child_execution: Execution | None
    decision: Any = None  # approvals.selectors.DecisionSummary of a CALLBACK op, if people decide it
    label: str = ""  # the name shown: a callback's own name rather than the SDK's "create callback id"
    failed_children: int = 0  # direct children that failed or hold a failure ("2 of 500 failed")
    failing: bool = False  # failed, holds a failure, or failed before a redrive: "failures only" shows it
    earlier: EarlierRun | None = None  # its run before the latest redrive
    earlier_bar: tuple[float, float] | None = None
    completion: HandCompletion | None = None  # a callback completed by hand
    ghost: bool = False  # failed before a redrive and not run again (yet): from the history

    @property
    def bar_style(self) -> str:
        """CSS custom properties for the bar, formatted here so no locale changes the decimal point."""
        return f"--l:{self.left:.3f}%;--w:{self.width:.3f}%"


@dataclass(frozen=True)
class Timeline:
    rows: list[TimelineRow]
    start: datetime.datetime
    end: datetime.datetime
    running: bool
    invocations: list[InvocationMark] = field(default_factory=list)  # the newest INVOCATIONS_SHOWN
    invocation_total: int = 0
    # (style, count) per outcome over every invocation, in OUTCOME_STYLES order, running last.
    invocation_counts: list[tuple[OutcomeStyle, int]] = field(default_factory=list)
    scale: TimeScale | None = None
    redrives: list[RedriveMark] = field(default_factory=list)
    failures: int = 0  # rows "failures only" shows
    # Operations that failed before the latest redrive and are not in the tree any more (the
    # handler has not reached them again, or took another path): after the rows, from the history.
    ghosts: list[TimelineRow] = field(default_factory=list)

    @property
    def ghost_rows(self) -> SafeString:
        if not self.ghosts:
            return mark_safe("")
        return rows_html(replace(self, rows=self.ghosts), RowLinks("", "", "", can_complete=False))

    @property
    def track_style(self) -> str:
        """The breaks and the redrive lines as CSS variables on the table (nothing per row)."""
        parts = [self.scale.background] if self.scale and self.scale.breaks else []
        if self.redrives:
            lines = ", ".join(
                f"transparent {m.left:.3f}%, var(--redrive) {m.left:.3f}% calc({m.left:.3f}% + 2px), "
                f"transparent calc({m.left:.3f}% + 2px)"
                for m in self.redrives
            )
            parts.append(f"--redrives:linear-gradient(90deg, {lines})")
        return ";".join(parts)

    @property
    def breaks(self) -> tuple[Break, ...]:
        return self.scale.breaks if self.scale else ()

    @property
    def axis_labels(self) -> list[AxisLabel]:
        """The axis's labels that do not overlap: the start, the end, the longest breaks."""
        end = f"{duration(self.span)}{' (now)' if self.running else ''}"
        if self.scale is None:
            return fit_labels([AxisLabel("0", 0.0, "the start"), AxisLabel(end, 100.0, "the end")])
        return self.scale.axis_labels(end)

    @property
    def invocation_summary(self) -> str:
        """ "1 timed out · 3 pending · 1 succeeded" for the lane's details cell."""
        return " · ".join(f"{count} {style.label}" for style, count in self.invocation_counts)

    @property
    def span(self) -> datetime.timedelta:
        return self.end - self.start

    @property
    def midpoint(self) -> datetime.timedelta:
        return self.span / 2


def kind_of(op: Operation) -> str:
    if op.type == OperationType.CONTEXT and op.sub_type in KIND_LABELS:
        return KIND_LABELS[op.sub_type]
    return TYPE_LABELS.get(op.type, op.type)


@dataclass(frozen=True, slots=True)
class RedriveMark:
    redrive: Redrive
    left: float  # % of the track

    @property
    def title(self) -> str:
        return self.redrive.title


def build_timeline(data: Any, now: datetime.datetime) -> Timeline:
    """Rows for every operation of ``data`` (a ``DetailData``) on the execution's time scale."""
    execution: Execution = data.execution
    start = execution.started_at
    end = execution.ended_at or max(now, start)
    nodes = list(data.flattened())
    decisions = _decisions(
        [node.operation for node in nodes if node.operation.type == OperationType.CALLBACK]
    )
    story = execution_story(execution, (node.operation for node in nodes))
    invocations: list[Invocation] = data.invocations
    scale = build_scale(start, end, _busy(nodes, invocations, story))
    failed_children = _failed_children(nodes)
    rows = []
    for node in nodes:
        op = node.operation
        op_end = op.ended_at or (end if op.status in OPEN_OPERATION_STATUSES else op.started_at)
        left, width = scale.bar(op.started_at, op_end)
        earlier = story.earlier.get(op.operation_id)
        parent = data.nodes.get(op.parent_id) if op.parent_id else None
        failed = failed_children.get(op.operation_id, 0)
        rows.append(
            TimelineRow(
                op=op,
                depth=node.depth,
                children=len(node.children),
                folded=len(node.children) > FOLD_CHILDREN_OVER,
                kind=kind_of(op),
                left=left,
                width=width,
                open_ended=op.ended_at is None and op.status in OPEN_OPERATION_STATUSES,
                child_execution=data.children.get(op.operation_id),
                decision=decisions.get(op.pk),
                label=callback_label(op, parent.operation if parent else None),
                failed_children=failed,
                failing=op.status in FAILED_STATUSES or failed > 0 or earlier is not None,
                earlier=earlier,
                earlier_bar=scale.bar(earlier.started_at, earlier.ended_at) if earlier else None,
                completion=story.completions.get(op.operation_id),
            )
        )
    ghosts = _ghost_rows(story, scale)
    return Timeline(
        rows=rows,
        start=start,
        end=end,
        running=execution.ended_at is None,
        invocations=[_mark(inv, end, scale) for inv in invocations[-INVOCATIONS_SHOWN:]],
        invocation_total=len(invocations),
        invocation_counts=_outcome_counts(invocations),
        scale=scale,
        redrives=[RedriveMark(r, round(scale.x(r.at), 3)) for r in story.redrives],
        failures=sum(1 for row in rows if row.failing) + len(ghosts),
        ghosts=ghosts,
    )


def _busy(
    nodes: list[Any], invocations: list[Invocation], story: ExecutionStory
) -> Iterator[tuple[datetime.datetime, datetime.datetime]]:
    """What keeps the time axis linear: invocations, and the instants operations start and end."""
    for inv in invocations:
        yield inv.started_at, inv.ended_at or inv.started_at
    for node in nodes:
        op = node.operation
        yield op.started_at, op.started_at
        if op.ended_at:
            yield op.ended_at, op.ended_at
    for redrive in story.redrives:
        yield redrive.at, redrive.at
    for run in story.earlier.values():
        yield run.started_at, run.started_at
        yield run.ended_at, run.ended_at
    for ghost in story.ghosts:
        yield ghost.started_at, ghost.ended_at or ghost.started_at


def _failed_children(nodes: list[Any]) -> dict[str, int]:
    """Per parent: its direct children that failed or hold a failure somewhere below them.

    One pass from the leaves up (``nodes`` is depth-first, parents first), so a
    folded map of 500 items can say "2 of 500 failed" without unfolding.
    """
    holds_failure: dict[int, bool] = {}
    counts: dict[str, int] = {}
    for node in reversed(nodes):
        op = node.operation
        failed = sum(1 for child in node.children if holds_failure.get(id(child)))
        if failed:
            counts[op.operation_id] = failed
        holds_failure[id(node)] = op.status in FAILED_STATUSES or failed > 0
    return counts


def _ghost_rows(story: ExecutionStory, scale: TimeScale) -> list[TimelineRow]:
    """Operations that failed before the latest redrive and are gone since, as rows of their own."""
    rows = []
    for ghost in story.ghosts:
        left, width = scale.bar(ghost.started_at, ghost.ended_at or ghost.started_at)
        rows.append(
            TimelineRow(
                op=ghost,
                depth=0,
                children=0,
                folded=False,
                kind=kind_of(ghost),
                left=left,
                width=width,
                open_ended=False,
                child_execution=None,
                label=callback_label(ghost, None),
                failing=True,
                ghost=True,
            )
        )
    return rows


def _mark(inv: Invocation, end: datetime.datetime, scale: TimeScale) -> InvocationMark:
    left, width = scale.bar(inv.started_at, inv.ended_at or end)
    return InvocationMark(
        invocation=inv,
        outcome=outcome_style(inv),
        left=left,
        width=width,
        open_ended=inv.ended_at is None,
    )


def _outcome_counts(invocations: list[Invocation]) -> list[tuple[OutcomeStyle, int]]:
    counts = Counter(outcome_style(inv) for inv in invocations)
    order = {style: index for index, style in enumerate([*OUTCOME_STYLES.values(), RUNNING_STYLE])}
    return sorted(counts.items(), key=lambda item: order.get(item[0], len(order)))


def _decisions(callbacks: list[Operation]) -> dict[int, Any]:
    """Who decided each callback answered through the approvals app (no query without callbacks)."""
    if not callbacks:
        return {}
    return decisions_for_operations(callbacks)


# --- rows as HTML ------------------------------------------------------------------------------
#
# The rows are the one part of a page rendered in Python rather than by the template
# engine: an execution with 3,000 operations took ~600 ms through {% for %} (about thirty
# nodes per row) and takes ~40 ms here, which keeps the detail page in its time budget.
# The partial around them (detail.html#timeline) is still the one template for the page,
# the htmx swap and the live refresh.

ROW = (
    '<tr id="op-{id}" data-depth="{depth}"{folded}{fail} data-nav-item>'
    '<td><div class="op-name" style="--depth:{depth}">{toggle}<span class="kind">{kind}</span>'
    '<button type="button" class="label" data-op-open data-nav-link title="{name}">{name}</button>'
    "{count}</div></td>"
    '<td><span class="badge {cls}">{status}</span>{ghost}</td>'
    '<td><div class="track {cls}"{took}>{earlier}<span class="bar{open}" style="{bar}"></span></div></td>'
    '<td class="info info-cell">{info}</td></tr>\n'
)
# The run before a redrive, drawn faint in the same track.
EARLIER_BAR = '<span class="bar earlier" style="--l:{left:.3f}%;--w:{width:.3f}%" title="{title}"></span>'
GHOST = ' <span class="tag" data-testid="before-redrive">before the redrive</span>'
TOGGLE = '<button type="button" class="toggle" data-toggle aria-expanded="true" aria-label="Fold">▸</button>'
NO_TOGGLE = '<span class="toggle-spacer"></span>'
# A folded context whose rows are not on the page: expanding fetches them (timeline_window.py).
LAZY_TOGGLE = (
    '<button type="button" class="toggle" aria-expanded="false" aria-label="Expand" data-lazy-toggle '
    'hx-get="{url}" hx-include="#{state}" hx-target="closest tr" hx-swap="outerHTML">▸</button>'
)


@dataclass(frozen=True)
class RowLinks:
    """URL prefixes for the row links, reversed once per page instead of once per row."""

    attempts: str
    callback: str
    execution: str
    can_complete: bool
    children: str = ""  # where a folded row fetches its children ("...?parent={}"); "" folds in place
    state_id: str = ""  # the id of the inputs that row requests send along

    @classmethod
    def for_execution(cls, execution: Execution, *, can_complete: bool) -> RowLinks:
        marker = "OPERATION"
        return cls(
            attempts=reverse("console:step-attempts", args=[execution.pk, marker]).replace(marker, "{}"),
            callback=reverse("console:callback-complete", args=[execution.pk, marker]).replace(marker, "{}"),
            execution=reverse("console:execution-detail", args=[0]).replace("/0/", "/{}/"),
            can_complete=can_complete,
        )


def rows_html(timeline: Timeline, links: RowLinks) -> SafeString:
    """Every row of the timeline table; all text is escaped."""
    out = []
    for row in timeline.rows:
        op = row.op
        cls = status_class(op.status)
        took = f' title="{duration(op.ended_at - op.started_at)}"' if op.ended_at else ""
        out.append(
            ROW.format(
                id=escape(op.operation_id),
                depth=row.depth,
                folded=" data-collapsed" if row.folded and not links.children else "",
                fail=" data-fail" if row.failing else "",
                toggle=_toggle(row, links),
                kind=row.kind,
                name=escape(row.label or op.name or op.operation_id),
                count=f'<span class="muted small">{row.children}</span>' if row.children else "",
                cls=cls,
                status=escape(op.status),
                ghost=GHOST if row.ghost else "",
                took=took,
                earlier=_earlier_bar(row),
                open=" open-ended" if row.open_ended else "",
                bar=row.bar_style,
                info=_info(row, links),
            )
        )
    return mark_safe("".join(out))  # every interpolated value above is escaped or ours


def _toggle(row: TimelineRow, links: RowLinks) -> str:
    if not row.children:
        return NO_TOGGLE
    if row.folded and links.children:
        url = escape(links.children.format(quote(row.op.operation_id, safe="")))
        return LAZY_TOGGLE.format(url=url, state=escape(links.state_id))
    return TOGGLE


def _earlier_bar(row: TimelineRow) -> str:
    if row.earlier is None or row.earlier_bar is None:
        return ""
    left, width = row.earlier_bar
    return EARLIER_BAR.format(left=left, width=width, title=escape(row.earlier.label))


def _countdown(moment: datetime.datetime) -> str:
    return str(countdown_tag(moment))  # formatting: the console's one countdown


def _info(row: TimelineRow, links: RowLinks) -> str:
    op = row.op
    parts: list[str] = []
    if row.failed_children:
        parts.append(
            f'<strong class="fail-count" data-testid="failed-descendants">'
            f"{row.failed_children} of {row.children} failed</strong>"
        )
    earlier = _earlier_info(row)
    if row.ghost and row.op.type == OperationType.STEP:
        parts.append(escape(before_redrive_label(op.status, op.attempt)))
    elif op.type == OperationType.STEP:
        # Counted across the redrive, as the panel and the attempts page count: the run after a
        # redrive that came after one failed attempt is attempt 2, the one before it attempt 1.
        parts.append(f"attempt {op.attempt + (row.earlier.attempt if row.earlier else 0)}")
        if earlier:  # before the link, so a narrow cell cuts the link rather than the story
            parts.append(earlier)
            earlier = ""
        if op.next_attempt_at and op.status in (OperationStatus.PENDING, OperationStatus.READY):
            parts.append(f"retry {_countdown(op.next_attempt_at)}")
        if op.attempt > 1 or row.earlier is not None:
            url = links.attempts.format(escape(op.operation_id))
            parts.append(f'<a href="{url}" data-testid="attempts-link">attempts diff</a>')
    elif op.type == OperationType.WAIT:
        parts.append(duration(op.wait_seconds))
        if op.scheduled_end_at:
            end = op.scheduled_end_at
            parts.append(
                f"ends {_countdown(end)}"
                if op.status == OperationStatus.STARTED
                else f"until {time_tag(end, 'time')}"
            )
    elif op.type == OperationType.CALLBACK:
        parts += _callback_info(op, links)
        if row.completion is not None:  # the audit log says who: that, not the approvals row's "expired"
            parts.append(f'<span data-testid="callback-decision">{escape(row.completion.label)}</span>')
        elif row.decision is not None:
            parts.append(_decision_info(op, row.decision))
    elif op.type == OperationType.CHAINED_INVOKE:
        parts.append(f"→ {escape(op.invoke_function_name)}")
        if child := row.child_execution:
            url = links.execution.format(child.pk)
            parts.append(f'<a href="{url}" data-testid="child-link">{escape(child.status.lower())} child</a>')
    if earlier:
        parts.append(earlier)
    if op.error:
        parts.append(escape(error_message(op.error)))
    elif op.result and op.type in (
        OperationType.CONTEXT,
        OperationType.CALLBACK,
        OperationType.CHAINED_INVOKE,
    ):
        parts.append(f"result {payload_size(op.result)}")
    return " · ".join(parts)


def _earlier_info(row: TimelineRow) -> str:
    if row.earlier is None:
        return ""
    return f'<span class="earlier-run" data-testid="earlier-run">{escape(row.earlier.label)}</span>'


def _decision_info(op: Operation, decision: Any) -> str:
    """ "approved by alice (inbox)", "confirmed by grace@example.com (e-mail link)", or the pending state."""
    if not decision.decided_by and op.status in (OperationStatus.SUCCEEDED, OperationStatus.FAILED):
        # Answered, but not through the approvals app (the API, or by hand before the audit
        # entry named its operation): the request lapsed because of that, not of time.
        return '<span data-testid="callback-decision">completed outside the inbox</span>'
    if not decision.decided_by:
        return (
            f'<span data-testid="callback-decision">{escape(decision.kind)} {escape(decision.status)}</span>'
        )
    channel = "e-mail link" if decision.channel == "email" else decision.channel
    return (
        f'<span data-testid="callback-decision">{escape(decision.status)} by '
        f"<strong>{escape(decision.decided_by)}</strong> ({escape(channel)})</span>"
    )


def _callback_info(op: Operation, links: RowLinks) -> list[str]:
    if op.status != OperationStatus.STARTED:
        return []
    parts = [f"times out {_countdown(op.callback_timeout_at)}" if op.callback_timeout_at else "no timeout"]
    if op.callback_heartbeat_at:
        parts.append(f"heartbeat due {_countdown(op.callback_heartbeat_at)}")
    if links.can_complete:
        parts.append(f'<a href="{links.callback.format(escape(op.operation_id))}">complete…</a>')
    return parts


# --- history (paged by executions/queries/history.py) ------------------------------------------

HIDDEN_DETAIL_KEYS = frozenset({"CallbackSeed"})  # derives the callback id with the server key


def visible_details(details: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in details.items() if key not in HIDDEN_DETAIL_KEYS}
