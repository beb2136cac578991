"""One operation of an execution: the timeline's side panel (htmx) or a page of its own."""

from __future__ import annotations

from django.http import Http404, HttpResponse
from django.views.decorators.http import require_GET

from executions.console.htmx import HtmxHttpRequest, page_or_partial
from executions.console.operation_panel import operation_panel
from executions.console.permissions import (
    COMPLETE_CALLBACK,
    VIEW_EXECUTION,
    allowed,
    execution_get_for_user,
    require,
)
from executions.models import Operation
from executions.vocabulary import OperationStatus, OperationType


@require_GET
@require(VIEW_EXECUTION)
def operation_detail(request: HtmxHttpRequest, pk: int, operation_id: str) -> HttpResponse:
    """The panel a click on a timeline row opens; without htmx, the same as a page."""
    execution = execution_get_for_user(request.user, pk)
    op = Operation.objects.filter(execution=execution, operation_id=operation_id).first()
    if op is None or op.type == OperationType.EXECUTION:
        raise Http404("No such operation")
    panel = operation_panel(execution, op)
    can_complete = (
        op.type == OperationType.CALLBACK
        and op.status == OperationStatus.STARTED
        and not execution.is_terminal
        and allowed(request.user, COMPLETE_CALLBACK)
    )
    context = {"execution": execution, "panel": panel, "can_complete": can_complete}
    return page_or_partial(request, "executions/operation.html", "panel", context)
