"""Home: counts by status, activity charts, and everything waiting on people.

The counts are exact on every view: the database maintains them (one query, see
``cq.execution_counts_by_status``). Charts and the board come from the console cache
(executions/queries/cache.py): one computation serves every viewer for a few seconds and is
refreshed off the request path, so neither costs a view more the more executions run.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET

from executions.console.htmx import HtmxHttpRequest, page_or_partial
from executions.console.permissions import COMPLETE_CALLBACK, VIEW_EXECUTION, allowed, check
from executions.engine import clock
from executions.queries import cache as console_cache
from executions.queries import console as cq

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
    entries = console_cache.cached_many(
        [
            cq.wanted_activity_chart(window=HOUR, buckets=12, title="Last hour, per 5 minutes"),
            cq.wanted_activity_chart(window=DAY, buckets=24, title="Last 24 hours, per hour"),
            cq.wanted_waiting_on_people(limit=BOARD_LIMIT),
        ],
        now=now,
    )
    hour_chart, day_chart, board = entries
    waiting = cq.aged(board, now)
    # Exact as of this view: maintained by the database, read on every view (one query).
    counts = cq.execution_counts_by_status()
    context = {
        "counts": [(status, label, counts.get(status, 0)) for status, label in cq.status_choices()],
        "total": sum(counts.values()),
        # activity_svg escapes every text it writes; the markup is safe to inline.
        "hour_chart": mark_safe(hour_chart.value),
        "day_chart": mark_safe(day_chart.value),
        "waiting": waiting,
        "waiting_groups": _groups(waiting),
        "can_complete": allowed(request.user, COMPLETE_CALLBACK),
        "now": now,
        **console_cache.refetch_context(entries, now=now, counts_since=request.GET.get("counts_since")),
    }
    return page_or_partial(request, "executions/home.html", "live-regions", context)


def _groups(waiting: list[Any]) -> list[tuple[str, int]]:
    """Callback names with how many executions wait on each, most first."""
    counts: dict[str, int] = {}
    for item in waiting:
        counts[item.name] = counts.get(item.name, 0) + 1
    return sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))
