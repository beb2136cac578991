"""The execution list's "Current step" cell: what an execution waits on now, or where it ended.

Built in Python like the rest of the row (``executions.console.rows``); the data comes from
``executions.queries.current_step`` in one query per page. Every text is escaped.
"""

from __future__ import annotations

import datetime
from html import escape

from executions.console.formatting import duration
from executions.engine import clock
from executions.queries.current_step import CurrentStep
from executions.vocabulary import OperationStatus

# How a finished operation of a finished execution is introduced ("failed at step 'charge'").
ENDED_VERBS = {
    OperationStatus.FAILED: "failed at",
    OperationStatus.TIMED_OUT: "timed out at",
    OperationStatus.STOPPED: "stopped at",
    OperationStatus.CANCELLED: "stopped at",
}
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
        text = f"{ENDED_VERBS.get(step.status, 'ended at')} {what}"
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
    """A countdown console.js keeps ticking (", 3 min 5 s left"); "" without a moment."""
    if step.until is None:
        return ""
    left = step.until - now
    if left.total_seconds() <= 0:
        return ", due now"
    iso = escape(step.until.isoformat())
    return f', <time data-countdown datetime="{iso}">{escape(duration(left))}</time> left'
