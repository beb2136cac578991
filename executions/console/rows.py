"""Rows of the execution list and of the home page's waiting board, rendered in Python.

Through the template engine a list row cost ~0.3 ms of CPU (variable lookups, six filters,
two ``{% url %}``), so fifty rows were half of the list page's CPU and a hundred board rows
most of the home page's. Under engine load the web process gets a small share of the CPU
and that time multiplied (the list's p95 reached 1.9 s). These build the same markup with
``html.escape`` in ~15 µs a row. The templates call them (``executions/templatetags/
console_rows.py``), so the page, its live refresh and the rows pushed by ``executions.live.updates``
share one definition. Every text is escaped.
"""

from __future__ import annotations

import datetime
from functools import lru_cache
from html import escape
from typing import TYPE_CHECKING
from urllib.parse import quote

from django.urls import get_script_prefix, reverse
from django.utils.http import RFC3986_SUBDELIMS
from django.utils.safestring import SafeString, mark_safe

from executions.console.formatting import countdown_tag, duration, elapsed, status_class, time_tag
from executions.console.steps import current_step_cell
from executions.vocabulary import ExecutionStatus

if TYPE_CHECKING:
    from executions.models import Execution
    from executions.queries.console import WaitingCallback

URL_SAFE = RFC3986_SUBDELIMS + "~:@"  # what reverse() leaves unquoted in an argument ("/" aside)
MARKER = "987654321"  # a number, so int URL converters accept it; never a real id in a URL prefix

LIST_ROW = (
    '<tr id="execution-row-{pk}" data-live-row data-nav-item data-status="{status}" '
    'data-testid="execution-row">\n'
    '  <td class="check"><input type="checkbox" name="ids" value="{pk}" form="bulk-form" data-select '
    'aria-label="Select {name}"></td>\n'
    '  <td><span class="badge {cls}" data-testid="row-status">{status}</span></td>\n'
    '  <td><a class="id" href="{detail}" data-nav-link>{short_name}</a>{label}</td>\n'
    '  <td><a href="{list}?function={function_query}">{function}</a> '
    '<span class="muted small">v{version}</span></td>\n'
    '  <td class="step-cell hide-sm" data-testid="row-step">{step}</td>\n'
    '  <td class="nowrap">{started}</td>\n'
    '  <td class="num nowrap">{duration}</td>\n'
    '  <td class="hide-sm nowrap">{ended}</td>\n'
    "</tr>\n"
)

WAITING_ROW = (
    '<tr data-nav-item data-testid="waiting-row">\n'
    "  <td><strong>{name}</strong></td>\n"
    "  <td>{function}</td>\n"
    '  <td><a class="id" href="{detail}" data-nav-link>{execution}</a>{label}{paused}</td>\n'
    '  <td class="num nowrap">{age}</td>\n'
    '  <td class="nowrap">{time_left}</td>\n'
    '  <td class="right">{complete}</td>\n'
    "</tr>\n"
)
PAUSED_BADGE = '\n    <span class="badge st-paused">PAUSED</span>'
# An execution's business label (Execution.label) under its name.
LABEL = '<span class="row-label" data-testid="row-label">{}</span>'


@lru_cache(maxsize=64)
def _url_pattern(name: str, script_prefix: str, *args: str) -> str:
    """The URL ``name`` with its arguments as ``{}`` slots, reversed once (per script prefix)."""
    return reverse(name, args=args).replace(MARKER, "{}")


def _url(name: str, *args: object) -> str:
    """Like ``reverse(name, args=args)`` for int and URL-safe string arguments, without its cost."""
    pattern = _url_pattern(name, get_script_prefix(), *(MARKER for _ in args))
    return pattern.format(*(quote(str(arg), safe=URL_SAFE) for arg in args))


def _truncated(text: str, length: int) -> str:
    """``truncatechars``: at most ``length`` characters, the last one an ellipsis when cut."""
    return text if len(text) <= length else text[: length - 1] + "…"


def _label(execution: Execution) -> str:
    return LABEL.format(escape(_truncated(execution.label, 80))) if execution.label else ""


def execution_row(execution: Execution) -> SafeString:
    """The list's row of ``execution`` (its function selected; the large columns may be deferred)."""
    ended = execution.ended_at
    if ended is not None:
        took = escape(elapsed(execution.started_at, ended))
        ended_text = time_tag(ended, "time")
    else:
        took = f'<span class="muted">{escape(elapsed(execution.started_at))}…</span>'
        ended_text = ""
    function = execution.function.name
    return mark_safe(
        LIST_ROW.format(
            pk=int(execution.pk),
            status=escape(execution.status),
            cls=escape(status_class(execution.status)),
            name=escape(execution.name),
            short_name=escape(_truncated(execution.name, 48)),
            detail=escape(_url("console:execution-detail", execution.pk)),
            list=escape(_url("console:execution-list")),
            function_query=escape(quote(function, safe="/")),
            function=escape(function),
            version=int(execution.function_version),
            label=_label(execution),
            # Set by queries.current_step.attach_current_steps (the list view, live pushes).
            step=current_step_cell(getattr(execution, "current_step", None)),
            started=time_tag(execution.started_at),
            duration=took,
            ended=ended_text,
        )
    )


def waiting_row(item: WaitingCallback, now: datetime.datetime, *, can_complete: bool) -> SafeString:
    """The waiting board's row of one parked callback."""
    execution = item.execution
    if item.time_left is None:
        time_left = '<span class="muted">no timeout</span>'
    elif item.time_left.total_seconds() < 0:
        time_left = '<span class="badge st-timed-out">overdue</span>'
    else:
        time_left = countdown_tag(now + item.time_left, now)
    complete = ""
    if can_complete:
        url = _url("console:callback-complete", execution.pk, item.operation.operation_id)
        complete = f'<a class="btn btn-sm" href="{escape(url)}">Complete…</a>'
    return mark_safe(
        WAITING_ROW.format(
            name=escape(item.name),
            function=escape(execution.function.name),
            detail=escape(_url("console:execution-detail", execution.pk)),
            execution=escape(_truncated(execution.name, 40)),
            label=_label(execution),
            paused=PAUSED_BADGE if execution.status == ExecutionStatus.PAUSED else "",
            age=escape(duration(item.age)),
            time_left=time_left,
            complete=complete,
        )
    )
