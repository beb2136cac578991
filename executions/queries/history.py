"""The execution detail page's history: pages of events read by keyset, never the whole history.

An execution with 3,000 operations has ~6,100 history events; the page shows the first
``HISTORY_PAGE`` and fetches the next page on demand, after the last event id shown
(``event_id > after``, served by the (execution, event_id) unique index). A live refresh
renders again the pages the reader has opened (``pages``), up to ``MAX_PAGES``.

Two queries whatever the history's length: the event types with their counts (the filter
and the total), and the page.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count

from executions.models import Execution, HistoryEvent

HISTORY_PAGE = 200
MAX_PAGES = 25  # a live refresh re-renders at most this many pages (5,000 events)


@dataclass(frozen=True)
class HistoryPage:
    """Events in id order after ``after``; ``next_after`` is where the next page starts (None: none)."""

    events: list[HistoryEvent]
    types: list[str]  # event types present, for the filter
    selected_type: str  # "" for all types
    total: int  # events of the selected type (all events without one)
    after: int  # the page starts after this event id (0: from the first)
    pages: int  # pages shown from the first one, after this one is added
    next_after: int | None

    @property
    def page_size(self) -> int:
        return HISTORY_PAGE


def history_page(
    execution: Execution, *, event_type: str = "", after: int = 0, pages: int = 1
) -> HistoryPage:
    """A page of ``execution``'s history, oldest first, optionally of one event type.

    ``after`` > 0 gives the page after that event id (the "more" link). With
    ``after`` = 0, ``pages`` pages are read from the first event: what a live
    refresh shows again after the reader opened that many. An unknown type
    gives every event.
    """
    by_type = dict(
        HistoryEvent.objects.filter(execution=execution)
        .order_by()
        .values_list("event_type")
        .annotate(n=Count("pk"))
        .values_list("event_type", "n")
    )
    selected = event_type if event_type in by_type else ""
    total = by_type[selected] if selected else sum(by_type.values())
    pages = max(1, min(pages, MAX_PAGES))
    limit = HISTORY_PAGE if after > 0 else HISTORY_PAGE * pages
    events = HistoryEvent.objects.filter(execution=execution, event_id__gt=max(after, 0))
    if selected:
        events = events.filter(event_type=selected)
    rows = list(events.order_by("event_id")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return HistoryPage(
        events=rows,
        types=sorted(by_type),
        selected_type=selected,
        total=total,
        after=max(after, 0),
        pages=pages,
        next_after=rows[-1].event_id if more else None,
    )


def parse_int(value: str | None, default: int = 0) -> int:
    """A non-negative integer from a query parameter; ``default`` if it is not one."""
    text = (value or "").strip()
    return int(text) if text.isdigit() and len(text) < 10 else default
