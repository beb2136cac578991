"""Diff screens: a step's attempts side by side, and two executions of one function."""

from __future__ import annotations

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from executions.console import diffs
from executions.console.htmx import HtmxHttpRequest
from executions.console.permissions import VIEW_EXECUTION, execution_get_for_user, require
from executions.models import Execution, Operation
from executions.vocabulary import OperationType

COMPARE_CANDIDATES = 20


@require_GET
@require(VIEW_EXECUTION)
def step_attempts(request: HtmxHttpRequest, pk: int, operation_id: str) -> HttpResponse:
    execution = execution_get_for_user(request.user, pk)
    op = Operation.objects.filter(
        execution=execution, operation_id=operation_id, type=OperationType.STEP
    ).first()
    if op is None:
        raise Http404("No such step")
    attempts = diffs.step_attempts(execution, operation_id)
    pairs = diffs.attempt_pairs(attempts)
    context = {"execution": execution, "operation": op, "attempts": attempts, "pairs": pairs}
    return render(request, "executions/attempts.html", context)


@require_GET
@require(VIEW_EXECUTION)
def compare(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    left = execution_get_for_user(request.user, pk)
    other = request.GET.get("with", "")
    right = execution_get_for_user(request.user, other) if other else None
    if right is not None and right.function_id != left.function_id:
        raise Http404("Only executions of the same function can be compared")
    candidates = (
        Execution.objects.filter(function_id=left.function_id)
        .exclude(pk=left.pk)
        .only("pk", "name", "label", "status", "started_at")
        .order_by("-started_at", "-id")[:COMPARE_CANDIDATES]
    )
    context = {
        "left": left,
        "right": right,
        "candidates": candidates,
        "diff": diffs.execution_diff(left, right) if right else None,
    }
    return render(request, "executions/compare.html", context)
