"""The function registry: list, detail, create, edit, enable/disable (confirmed), start an execution."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from executions import operator
from executions.audit import Actor
from executions.console.forms import FunctionForm, StartForm
from executions.console.htmx import HtmxHttpRequest
from executions.console.permissions import (
    ADD_FUNCTION,
    CHANGE_FUNCTION,
    OPERATE_EXECUTION,
    VIEW_EXECUTION,
    VIEW_FUNCTION,
    allowed,
    function_get_for_user,
    require,
)
from executions.engine.errors import ServiceError
from executions.engine.functions import format_environment_lines
from executions.engine.starts import StartResult
from executions.models import Function
from executions.queries import console as cq

RECENT_EXECUTIONS = 20


@require_GET
@require(VIEW_FUNCTION)
def function_list(request: HtmxHttpRequest) -> HttpResponse:
    functions = list(Function.objects.order_by("name"))
    stats = cq.function_stats(functions)
    rows = [{"function": f, "stats": stats.get(f.pk)} for f in functions]
    context = {"rows": rows, "can_add": allowed(request.user, ADD_FUNCTION)}
    return render(request, "executions/functions.html", context)


@require_GET
@require(VIEW_FUNCTION)
def function_detail(request: HtmxHttpRequest, name: str) -> HttpResponse:
    function = function_get_for_user(request.user, name)
    user = request.user
    recent = None
    if allowed(user, VIEW_EXECUTION):
        recent = cq.execution_page(cq.ExecutionFilters(function=function.name), limit=RECENT_EXECUTIONS).rows
    context = {
        "function": function,
        "stats": cq.function_stats([function]).get(function.pk),
        "versions": function.versions.order_by("-version"),
        "recent": recent,
        "can_change": allowed(user, CHANGE_FUNCTION),
        # A disabled function refuses new executions: no Start to offer.
        "can_start": allowed(user, OPERATE_EXECUTION) and function.durable and function.enabled,
    }
    return render(request, "executions/function_detail.html", context)


@require_http_methods(["GET", "POST"])
@require(VIEW_FUNCTION, ADD_FUNCTION)
def function_create(request: HtmxHttpRequest) -> HttpResponse:
    form = FunctionForm(request.POST or None)
    if request.method == "POST" and form.is_valid() and _saved(request, form, enabled=True):
        return redirect("console:function-detail", name=form.cleaned_data["name"])
    context = {"form": form, "function": None}
    return render(request, "executions/function_form.html", context, status=_status(form))


@require_http_methods(["GET", "POST"])
@require(VIEW_FUNCTION, CHANGE_FUNCTION)
def function_edit(request: HtmxHttpRequest, name: str) -> HttpResponse:
    function = function_get_for_user(request.user, name, change=True)
    form = FunctionForm(request.POST or None, initial=_initial(function), editing=True)
    if request.method == "POST" and form.is_valid() and _saved(request, form, enabled=function.enabled):
        return redirect("console:function-detail", name=function.name)
    context = {"form": form, "function": function}
    return render(request, "executions/function_form.html", context, status=_status(form))


@require_POST
@require(VIEW_FUNCTION, CHANGE_FUNCTION)
def function_enable(request: HtmxHttpRequest, name: str) -> HttpResponse:
    function = function_get_for_user(request.user, name, change=True)
    enabled = request.POST.get("enabled") == "1"
    if not enabled and request.POST.get("confirmed") != "1":
        return redirect("console:function-disable", name=function.name)  # confirm first
    operator.function_set_enabled(Actor.console(request.user), function.name, enabled)
    messages.success(request, f"{function.name} is {'enabled' if enabled else 'disabled'}.")
    return redirect("console:function-detail", name=function.name)


@require_GET
@require(VIEW_FUNCTION, CHANGE_FUNCTION)
def function_disable(request: HtmxHttpRequest, name: str) -> HttpResponse:
    """Disabling refuses every new execution, chained invokes included: confirm it first."""
    function = function_get_for_user(request.user, name, change=True)
    return render(request, "executions/function_disable.html", {"function": function})


@require_http_methods(["GET", "POST"])
@require(VIEW_FUNCTION, OPERATE_EXECUTION)
def function_start(request: HtmxHttpRequest, name: str) -> HttpResponse:
    function = function_get_for_user(request.user, name, operate=True)
    if not function.enabled and request.method == "GET":  # a POST gets the service's refusal
        messages.error(request, f"{function.name} is disabled: enable it to start executions.")
        return redirect("console:function-detail", name=function.name)
    form = StartForm(request.POST or None)
    if request.method == "POST" and form.is_valid() and (started := _started(request, function, form)):
        note = "Execution started." if started.created else "Started before under this name: the same one."
        messages.success(request, note)
        return redirect("console:execution-detail", pk=started.execution.pk)
    context = {"form": form, "function": function}
    return render(request, "executions/function_start.html", context, status=_status(form))


def _started(request: HtmxHttpRequest, function: Function, form: StartForm) -> StartResult | None:
    payload, name = form.cleaned_data["input_payload"] or None, form.cleaned_data["name"] or None
    try:
        return operator.start(Actor.console(request.user), function.name, payload, name=name)
    except ServiceError as exc:  # disabled function, bad name, same name with another input
        form.add_error(None, exc.message)
        return None


def _saved(request: HtmxHttpRequest, form: FunctionForm, *, enabled: bool) -> bool:
    """Register through the audited service; its refusals become form errors."""
    fields: dict[str, Any] = {**form.cleaned_data, "enabled": enabled}
    try:
        function = operator.function_save(Actor.console(request.user), **fields)
    except ServiceError as exc:
        # The form ran the same checks, so this is rare (e.g. a handler that broke meanwhile).
        field = getattr(exc, "field", None)
        form.add_error(field if field in form.fields else None, exc.message)
        return False
    messages.success(request, f"Saved {function.name} (version {function.version}).")
    return True


def _initial(function: Function) -> dict[str, Any]:
    fields = (
        "name",
        "handler",
        "durable",
        "description",
        "execution_timeout",
        "retention_days",
        "timeout_seconds",
        "memory_mb",
        "label_field",
    )
    initial = {field: getattr(function, field) for field in fields}
    initial["environment"] = format_environment_lines(function.environment or {})
    return initial


def _status(form: FunctionForm | StartForm) -> int:
    return 400 if form.is_bound and form.errors else 200
