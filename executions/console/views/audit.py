"""The audit log: who did what, when, through which channel; filterable and paged by keyset."""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

from django.db.models import Q, QuerySet
from django.http import HttpResponse
from django.utils.safestring import SafeString
from django.views.decorators.http import require_GET

from executions.console.formatting import time_tag
from executions.console.forms import AuditFilterForm
from executions.console.htmx import HtmxHttpRequest, page_or_partial
from executions.console.permissions import VIEW_AUDIT, require
from executions.models import AuditEntry

PAGE_SIZE = 100
DETAIL_CHARS = 160
# A moment written as text in an entry's details ("decided_at": "2026-11-30T12:59:06.22+00:00").
ISO_MOMENT = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?")
# Keys whose numbers are moments in epoch seconds or milliseconds (history-style fields).
EPOCH_KEY = re.compile(r"(_at|_time|timestamp)$", re.IGNORECASE)
EPOCH_SECONDS = (1e9, 1e11)  # 2001 to 5138: anything else is not a moment
# The actions operator.py, the bulk jobs, the fault switches and accounts.py record (a prefix filters).
ACTIONS = (
    "execution.",
    "execution.start",
    "execution.stop",
    "execution.pause",
    "execution.resume",
    "execution.redrive",
    "execution.rerun",
    "execution.delete",
    "callback.",
    "callback.succeed",
    "callback.fail",
    "function.",
    "bulk.",
    "fault.",
    "user.",
    "key.",
)


@require_GET
@require(VIEW_AUDIT)
def audit_log(request: HtmxHttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    entries = audit_entries(form.cleaned_data if form.is_valid() else {})
    page = list(_after_cursor(entries, request.GET.get("cursor", ""))[: PAGE_SIZE + 1])
    more = len(page) > PAGE_SIZE
    for entry in page:
        entry.shown_details = detail_items(entry.details)  # type: ignore[attr-defined]
    context = {
        "form": form,
        "entries": page[:PAGE_SIZE],
        "next_cursor": _cursor_of(page[PAGE_SIZE - 1]) if more else "",
        "query": _query_without_cursor(request),
        "action_choices": ACTIONS,
    }
    return page_or_partial(request, "executions/audit.html", "results", context)


def audit_entries(filters: dict[str, object]) -> QuerySet[AuditEntry]:
    entries = AuditEntry.objects.all()
    if filters.get("actor"):
        entries = entries.filter(actor_name__icontains=filters["actor"])
    if filters.get("action"):
        entries = entries.filter(action__startswith=filters["action"])
    if filters.get("channel"):
        entries = entries.filter(channel=filters["channel"])
    if filters.get("target"):
        entries = entries.filter(target__icontains=filters["target"])
    if isinstance(after := filters.get("after"), datetime.date):
        entries = entries.filter(created_at__date__gte=after)
    if isinstance(before := filters.get("before"), datetime.date):
        entries = entries.filter(created_at__date__lte=before)
    return entries.order_by("-created_at", "-id")


def detail_items(details: Any) -> list[tuple[str, str | SafeString]]:
    """An entry's details as (key, text) pairs to show: empty values left out, moments (ISO
    text, epoch numbers under a time-like key) as the console's one time tag, the rest cut short."""
    if not isinstance(details, dict):
        return [("details", _cut(details))] if details else []
    return [
        (str(key), _shown(str(key), value))
        for key, value in details.items()
        if value not in (None, "", [], {})
    ]


def _shown(key: str, value: Any) -> str | SafeString:
    moment = _moment(key, value)
    if moment is not None:
        return time_tag(moment)
    return _cut(value)


def _moment(key: str, value: Any) -> datetime.datetime | None:
    if isinstance(value, str) and ISO_MOMENT.fullmatch(value.strip()):
        try:
            moment = datetime.datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)  # stored in UTC
    if isinstance(value, int | float) and not isinstance(value, bool) and EPOCH_KEY.search(key):
        seconds = value / 1000 if value > EPOCH_SECONDS[1] else value  # milliseconds
        if EPOCH_SECONDS[0] <= seconds < EPOCH_SECONDS[1]:
            return datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return None


def _cut(value: Any) -> str:
    """Text as it is; numbers, lists and objects as JSON (not Python's repr); at most DETAIL_CHARS."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"


def _cursor_of(entry: AuditEntry) -> str:
    return f"{entry.created_at.isoformat()}|{entry.pk}"


def _after_cursor(entries: QuerySet[AuditEntry], cursor: str) -> QuerySet[AuditEntry]:
    """Entries older than the cursor's (created_at, id): stable pages while new entries arrive."""
    stamp, _, pk = cursor.partition("|")
    try:
        created_at, last_id = datetime.datetime.fromisoformat(stamp), int(pk)
    except ValueError:
        return entries
    return entries.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=last_id))


def _query_without_cursor(request: HtmxHttpRequest) -> str:
    params = request.GET.copy()
    params.pop("cursor", None)
    return params.urlencode()
