"""The audit log: who did what, when, through which channel; filterable and paged by keyset."""

from __future__ import annotations

import datetime

from django.db.models import Q, QuerySet
from django.http import HttpResponse
from django.views.decorators.http import require_GET

from executions.console.forms import AuditFilterForm
from executions.console.htmx import HtmxHttpRequest, page_or_partial
from executions.console.permissions import VIEW_AUDIT, require
from executions.models import AuditEntry

PAGE_SIZE = 100
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
