"""The execution list's "Current step" cell: what an execution waits on now, or where it ended.

Built in Python like the rest of the row (``executions.console.rows``); the data comes from
``executions.queries.current_step`` in one query per page. Every text is escaped.
"""

from __future__ import annotations

import datetime
from html import escape

from executions.console.formatting import countdown_tag
from executions.engine import clock
from executions.queries.current_step import CurrentStep
from executions.vocabulary import ExecutionStatus, OperationStatus

# Where an execution that ended badly ended ("failed at step 'charge'"): said with the
# execution's status (a stopped execution's callback is still STARTED), else the operation's.
ENDED_VERBS: dict[str, str] = {
    ExecutionStatus.FAILED: "failed at",
    ExecutionStatus.TIMED_OUT: "timed out at",
    ExecutionStatus.STOPPED: "stopped at",
    OperationStatus.CANCELLED: "stopped at",
}
# What the countdown of an open operation counts down to, as the timeline says it.
DEADLINES: dict[str, str] = {"wait": "ends", "step": ""}
NOUNS = {
    "step": "step",
    "wait": "timer",
    "approval": "approval",
    "verification": "e-mail verification",
    "callback": "callback",
    "invoke": "invoke of",
}


def current_step_cell(step: CurrentStep | None, now: datetime.datetime | None = None) -> str:
    """The cell's HTML (escaped); a muted dash when there is nothing to say."""
    if step is None:
        return '<span class="muted">&ndash;</span>'
    now = now or clock.now()
    what = _what(step)
    if not step.is_open:
        text = f"{ENDED_VERBS.get(step.ended or step.status, 'ended at')} {what}"
    elif step.kind == "step":
        text = _running_step(step, what, now)
    else:
        text = f"waiting on {what}{_until(step, now)}"
    if step.others:
        text += f' <span class="muted small">+{step.others} more</span>'
    return f'<span class="step-{escape(step.kind)}" data-step-kind="{escape(step.kind)}">{text}</span>'


def _what(step: CurrentStep) -> str:
    noun = NOUNS[step.kind]
    if not step.name or step.kind == "verification":
        return noun
    quoted = f"“{escape(step.name)}”" if step.kind != "invoke" else escape(step.name)
    return f"{noun} {quoted}"


def _running_step(step: CurrentStep, what: str, now: datetime.datetime) -> str:
    # ``attempt`` counts the attempts that ended: the one running (or due) is the next.
    if step.status in (OperationStatus.PENDING, OperationStatus.READY):  # retry scheduled, or due
        return f"retrying {what} (attempt {step.attempt + 1}){_until(step, now)}"
    attempt = f" (attempt {step.attempt + 1})" if step.attempt else ""
    return f"{what}{attempt}"


def _until(step: CurrentStep, now: datetime.datetime) -> str:
    """The console's one countdown, which console.js keeps ticking: ", times out in 3 min 5 s"
    (a callback), ", ends in …" (a wait), " in …" (a retry); "" without a moment."""
    if step.until is None:
        return ""
    if step.until <= now:
        return ", due now"
    verb = DEADLINES.get(step.kind, "times out")
    lead = f", {verb} " if verb else " "
    return f"{lead}{countdown_tag(step.until, now)}"
