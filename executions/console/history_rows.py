"""The history table's rows as HTML, built in Python like the timeline's rows.

Two hundred rows through the template engine took ~30 ms of the detail page's CPU (about
twenty nodes a row); here they take a few. An event's details are not in the row: the row's
``<details>`` fetches them when opened (``detail.html#event-details``), since 200 events'
payloads, decoded and raw, were most of the page's weight.
"""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import quote

from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator

from executions.console.formatting import elapsed, error_message, payload_size, time_tag
from executions.console.payloads import detail_time
from executions.console.timeline import HIDDEN_DETAIL_KEYS
from executions.console.timeline_history import callback_name
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
)  # the summary is HTML (escaped text and time tags)


# The operation's side panel (timeline.js opens it from any link carrying data-op-link, rendered
# timeline row or not); without JavaScript the link is the operation's own page.
OPERATION = '<a href="{url}" data-op-link="{id}" class="small">{name}</a>'
SUMMARY_PARTS = 4  # details named in the summary line; the rest are one click away


def history_rows_html(history: HistoryPage, execution: Execution) -> SafeString:
    """The rows of one page of history (or the "no events" row); all text is escaped."""
    if not history.events:
        of_type = " of this type" if history.selected_type else ""
        return mark_safe(f'<tr><td colspan="5" class="empty">No events{of_type}.</td></tr>')
    url = escape(reverse("console:execution-history", args=[execution.pk]))
    marker = "OPERATION"  # reversed once per page, not per row
    op_url = reverse("console:operation-detail", args=[execution.pk, marker]).replace(marker, "{}")
    started = execution.started_at
    return mark_safe("".join(_row(event, url, op_url, started) for event in history.events))


def _row(event: HistoryEvent, url: str, op_url: str, started: datetime.datetime) -> str:
    operation = ""
    if event.operation_id:
        # A callback by its own name (the SDK's is "<name> create callback id"), as the timeline names it.
        name = Truncator(callback_name(event.name) if event.name else event.operation_id).chars(40)
        operation = OPERATION.format(
            url=escape(op_url.format(quote(event.operation_id, safe=""))),
            id=escape(event.operation_id),
            name=escape(name),
        )
        if event.sub_type:
            operation += f' <span class="tag">{escape(event.sub_type)}</span>'
    details = ""
    if event.details:
        details = DETAILS.format(url=url, id=event.event_id, summary=_summary(event.details) or "details")
    at = event.timestamp.astimezone(datetime.UTC)
    return ROW.format(
        type=escape(event.event_type),
        id=event.event_id,
        operation=operation,
        at=f"{at:%Y-%m-%d %H:%M:%S.%f}"[:23],
        since=escape(elapsed(started, event.timestamp)),
        details=details,
    )


def _summary(details: dict[str, Any]) -> str:
    """One line of HTML: the error message, or the payloads' sizes, the times (as time tags) and
    the other plain values the event carries."""
    error = details.get("Error")
    if isinstance(error, dict) and error.get("Payload"):
        return escape(error_message(error["Payload"]))
    parts = []
    for key, value in details.items():
        if key in HIDDEN_DETAIL_KEYS or value in (None, "", {}):
            continue
        if (moment := detail_time(key, value)) is not None:
            parts.append(f"{escape(key)}: {time_tag(moment)}")
        elif isinstance(value, dict) and "Payload" in value:
            parts.append(f"{escape(key)}: {payload_size(value['Payload']) or 'empty'}")
        elif not isinstance(value, dict | list):
            parts.append(escape(Truncator(f"{key}: {value}").chars(80)))
    return ", ".join(parts[:SUMMARY_PARTS])
