"""Bulk stop and redrive: confirm (count, reason), then a background job with a progress page."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from executions import bulk_jobs, services
from executions.audit import Actor
from executions.console import bulk
from executions.console.forms import BulkForm
from executions.console.htmx import HtmxHttpRequest, page_or_partial
from executions.console.permissions import (
    OPERATE_EXECUTION,
    VIEW_EXECUTION,
    bulk_job_get_for_user,
    require,
)
from executions.models import Execution, Operation
from executions.queries import console as cq

SAMPLE = 10


@dataclass(frozen=True)
class Reach:
    """How many of the targets the action applies to now, and the statuses of the rest."""

    applies: int
    total: int
    skipped: tuple[tuple[str, int], ...] = ()  # (status, how many), "not found" for gone ids

    @property
    def skipped_text(self) -> str:
        """ "1 FAILED, 2 SUCCEEDED" """
        return ", ".join(f"{count} {status}" for status, count in self.skipped)


@require_POST
@require(VIEW_EXECUTION, OPERATE_EXECUTION)
def bulk_confirm(request: HtmxHttpRequest) -> HttpResponse:
    """First POST (from the list): show what would happen. Second (confirmed, with a reason): start."""
    form = BulkForm(request.POST)
    valid = form.is_valid()
    if not valid and set(form.errors) != {"reason"}:
        context = {"form": form, "targets": [], "reach": None}
        return render(request, "executions/bulk_confirm.html", context, status=400)
    # Valid, or only the reason missing: the confirmation page again, with the error at the reason.
    data = form.cleaned_data
    targets = _targets(data)
    redrive = data["action"] == "redrive"
    reach = _reach(str(data["action"]), str(data["scope"]), targets)
    if valid and data["confirmed"] and reach.applies:
        fields = {key: data[key] for key in ("action", "scope", "query", "reason")}
        accept = bool(data["rerun_interrupted"]) and redrive
        job = bulk_jobs.bulk_job_create(
            Actor.console(request.user), target_ids=targets, rerun_interrupted=accept, **fields
        )
        return redirect("console:bulk-job", pk=job.pk)
    interrupted = services.redrive_interrupted_operations(targets) if redrive else {}
    context = {
        "form": form,
        "targets": targets,
        "reach": reach,
        "sample": Execution.objects.filter(pk__in=targets[:SAMPLE]).select_related("function"),
        "limit": settings.DURABLE_BULK_MAX_EXECUTIONS,
        "interrupted_count": len(interrupted),
        "interrupted_sample": _interrupted_sample(interrupted),
    }
    # A confirmed action that applies to none of its targets is refused, with the page saying why.
    refused = bool(form.errors) or (bool(data["confirmed"]) and not reach.applies)
    return render(request, "executions/bulk_confirm.html", context, status=400 if refused else 200)


def _reach(action: str, scope: str, targets: list[int]) -> Reach:
    """A filter's targets are only those the action applies to; a selection's are read (one query)."""
    if scope != "selection":
        return Reach(len(targets), len(targets))
    counts = dict(
        Execution.objects.filter(pk__in=targets)
        .order_by()
        .values_list("status")
        .annotate(count=Count("pk"))
        .values_list("status", "count")
    )
    eligible = bulk_jobs.ELIGIBLE[action]
    skipped = sorted((status, n) for status, n in counts.items() if status not in eligible)
    if missing := len(targets) - sum(counts.values()):
        skipped.append(("not found", missing))
    applies = sum(n for status, n in counts.items() if status in eligible)
    return Reach(applies, len(targets), tuple(skipped))


def _interrupted_sample(interrupted: dict[int, list[Operation]]) -> list[tuple[Execution, list[Operation]]]:
    """The first few targets with interrupted operations, for the confirmation page to name."""
    shown = sorted(interrupted)[:SAMPLE]
    executions = Execution.objects.select_related("function").in_bulk(shown)
    return [(executions[pk], interrupted[pk]) for pk in shown if pk in executions]


def _targets(data: dict[str, object]) -> list[int]:
    action = str(data["action"])
    if data["scope"] == "selection":
        return list(dict.fromkeys(data["ids"]))[: settings.DURABLE_BULK_MAX_EXECUTIONS]  # type: ignore[call-overload]
    filters, _ = cq.ExecutionFilters.from_query(QueryDict(str(data["query"] or "")))
    return bulk.filter_target_ids(filters, action, settings.DURABLE_BULK_MAX_EXECUTIONS)


@require_GET
@require(VIEW_EXECUTION, OPERATE_EXECUTION)
def bulk_job(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    job = bulk_job_get_for_user(request.user, pk)
    return page_or_partial(request, "executions/bulk_job.html", "progress", {"job": job})
