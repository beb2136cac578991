"""The history table's rows as HTML, built in Python like the timeline's rows.

Two hundred rows through the template engine took ~30 ms of the detail page's CPU (about
twenty nodes a row); here they take a few. An event's details are not in the row: the row's
``<details>`` fetches them when opened (``detail.html#event-details``), since 200 events'
payloads, decoded and raw, were most of the page's weight.
"""

from __future__ import annotations

import datetime

from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator

from executions.console.formatting import elapsed, event_summary
from executions.models import Execution, HistoryEvent
from executions.queries.history import HistoryPage

ROW = (
    '<tr data-nav-item data-testid="history-row" data-event-type="{type}"><td class="num">{id}</td>'
    '<td class="mono small">{type}</td><td>{operation}</td>'
    '<td class="num nowrap" title="{at} UTC">+{since}</td><td>{details}</td></tr>\n'
)
DETAILS = (
    '<details hx-get="{url}{id}/" hx-trigger="toggle once" hx-target="find div" data-testid="event-details">'
    '<summary class="small">{summary}</summary><div><span class="muted small">Loading…</span></div></details>'
)


def history_rows_html(history: HistoryPage, execution: Execution) -> SafeString:
    """The rows of one page of history (or the "no events" row); all text is escaped."""
    if not history.events:
        of_type = " of this type" if history.selected_type else ""
        return mark_safe(f'<tr><td colspan="5" class="empty">No events{of_type}.</td></tr>')
    url = escape(reverse("console:execution-history", args=[execution.pk]))
    started = execution.started_at
    return mark_safe("".join(_row(event, url, started) for event in history.events))


def _row(event: HistoryEvent, url: str, started: datetime.datetime) -> str:
    operation = ""
    if event.operation_id:
        name = Truncator(event.name or event.operation_id).chars(40)
        operation = f'<a href="#op-{escape(event.operation_id)}" class="small">{escape(name)}</a>'
        if event.sub_type:
            operation += f' <span class="tag">{escape(event.sub_type)}</span>'
    details = ""
    if event.details:
        summary = event_summary(event.details) or "details"
        details = DETAILS.format(url=url, id=event.event_id, summary=escape(summary))
    at = event.timestamp.astimezone(datetime.UTC)
    return ROW.format(
        type=escape(event.event_type),
        id=event.event_id,
        operation=operation,
        at=f"{at:%Y-%m-%d %H:%M:%S.%f}"[:23],
        since=escape(elapsed(started, event.timestamp)),
        details=details,
    )
