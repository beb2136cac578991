"""Demo faults: switch the injected faults of a demo fault point off (outage over) or on."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from examples.models import FaultSwitch
from examples.services import FAULT_POINTS
from examples.switches import fault_switch_set_by
from executions.audit import Actor
from executions.console.htmx import HtmxHttpRequest
from executions.console.permissions import OPERATE_EXECUTION, VIEW_EXECUTION, allowed, require


@require_GET
@require(VIEW_EXECUTION)
def faults(request: HtmxHttpRequest) -> HttpResponse:
    switched_off = set(FaultSwitch.objects.filter(disabled=True).values_list("point", flat=True))
    points = [{"point": point, "off": point in switched_off} for point in FAULT_POINTS]
    groups: dict[str, list[dict[str, object]]] = {}
    for point in points:
        groups.setdefault(str(point["point"]).split(".")[0], []).append(point)
    context = {"groups": groups, "can_switch": allowed(request.user, OPERATE_EXECUTION)}
    return render(request, "executions/faults.html", context)


@require_POST
@require(VIEW_EXECUTION, OPERATE_EXECUTION)
def fault_switch(request: HtmxHttpRequest) -> HttpResponse:
    point, state = request.POST.get("point", ""), request.POST.get("faults", "")
    if point not in FAULT_POINTS or state not in ("on", "off"):
        return HttpResponseBadRequest("Unknown fault point or state")
    fault_switch_set_by(Actor.console(request.user), point, disabled=state == "off")
    messages.success(request, f"{point}: injected faults switched {state}.")
    return redirect("console:faults")
