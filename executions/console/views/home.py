"""Home: counts by status, activity charts, and everything waiting on people."""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET

from executions import clock
from executions import console_queries as cq
from executions.console.htmx import HtmxHttpRequest, page_or_partial
from executions.console.permissions import COMPLETE_CALLBACK, VIEW_EXECUTION, allowed, check

HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)
BOARD_LIMIT = 100
USE_INBOX = "approvals.use_inbox"


@require_GET
@login_required
def home(request: HtmxHttpRequest) -> HttpResponse:
    if not allowed(request.user, VIEW_EXECUTION) and allowed(request.user, USE_INBOX):
        return redirect("approvals:inbox")  # approvers land on their inbox, not on a 403
    check(request.user, VIEW_EXECUTION)
    now = clock.now()
    counts = cq.execution_counts_by_status()
    waiting = cq.waiting_on_people(limit=BOARD_LIMIT, now=now)
    context = {
        "counts": [(status, label, counts.get(status, 0)) for status, label in cq.status_choices()],
        "total": sum(counts.values()),
        "hour_chart": _chart(now, HOUR, 12, "Last hour, per 5 minutes"),
        "day_chart": _chart(now, DAY, 24, "Last 24 hours, per hour"),
        "waiting": waiting,
        "waiting_groups": _groups(waiting),
        "can_complete": allowed(request.user, COMPLETE_CALLBACK),
        "now": now,
    }
    return page_or_partial(request, "executions/home.html", "live-regions", context)


def _chart(now: datetime.datetime, window: datetime.timedelta, buckets: int, title: str) -> str:
    # activity_svg escapes every text it writes; the markup is safe to inline.
    return mark_safe(cq.activity_svg(cq.activity(now, window=window, buckets=buckets), title=title))


def _groups(waiting: list[Any]) -> list[tuple[str, int]]:
    """Callback names with how many executions wait on each, most first."""
    counts: dict[str, int] = {}
    for item in waiting:
        counts[item.name] = counts.get(item.name, 0) + 1
    return sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))
