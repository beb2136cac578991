"""Operator actions on one execution: stop, pause, resume, redrive, re-run, complete a callback.

Every action goes through ``executions.operator`` (the engine's service plus an
audit entry) with ``Actor.console``; none sets state itself. Destructive ones
(stop, redrive) have a confirmation page that asks for a reason. Every POST is
CSRF-checked by Django's middleware; the result is a redirect to the detail page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from executions import operator, services
from executions.audit import Actor
from executions.console.callbacks import expected_result
from executions.console.formatting import pretty_json
from executions.console.forms import (
    CallbackFailForm,
    CallbackSucceedForm,
    OptionalReasonForm,
    ReasonForm,
    RedriveForm,
    RerunForm,
)
from executions.console.htmx import HtmxHttpRequest
from executions.console.permissions import (
    COMPLETE_CALLBACK,
    OPERATE_EXECUTION,
    VIEW_EXECUTION,
    execution_get_for_user,
    require,
)
from executions.console.timeline_history import callback_label
from executions.engine.errors import ServiceError
from executions.models import Execution, Operation
from executions.vocabulary import REDRIVABLE_STATUSES, ExecutionAction, OperationStatus, OperationType, allows


def _performed(
    request: HtmxHttpRequest, form: forms.Form, note: str, action: Callable[..., Any], *args: Any, **kw: Any
) -> bool:
    """Run an operator action; a refusal (wrong state, bad input) becomes a form error."""
    try:
        action(Actor.console(request.user), *args, **kw)
    except ServiceError as exc:
        form.add_error(None, exc.message)
        return False
    messages.success(request, note)
    return True


def _action_page(
    request: HtmxHttpRequest, execution: Execution, action: str, form: forms.Form, **extra: Any
) -> HttpResponse:
    context = {"execution": execution, "action": action, "form": form, **extra}
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "executions/action.html", context, status=status)


@require_http_methods(["GET", "POST"])
@require(VIEW_EXECUTION, OPERATE_EXECUTION)
def execution_stop(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    execution = execution_get_for_user(request.user, pk, operate=True)
    form = ReasonForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        reason = form.cleaned_data["reason"]
        if _performed(request, form, "Execution stopped.", operator.stop, execution, reason):
            return redirect("console:execution-detail", pk=execution.pk)
    return _action_page(request, execution, "stop", form)


@require_http_methods(["GET", "POST"])
@require(VIEW_EXECUTION, OPERATE_EXECUTION)
def execution_redrive(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    execution = execution_get_for_user(request.user, pk, operate=True)
    form = RedriveForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        note = "Redriven: the handler replays from its last good checkpoint."
        reason, accept = form.cleaned_data["reason"], form.cleaned_data["rerun_interrupted"]
        if _performed(request, form, note, operator.redrive, execution, reason, rerun_interrupted=accept):
            return redirect("console:execution-detail", pk=execution.pk)
    preview = services.redrive_preview(execution) if execution.status in REDRIVABLE_STATUSES else None
    return _action_page(request, execution, "redrive", form, preview=preview)


@require_http_methods(["GET", "POST"])
@require(VIEW_EXECUTION, OPERATE_EXECUTION)
def execution_rerun(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    execution = execution_get_for_user(request.user, pk, operate=True)
    form = RerunForm(request.POST or None, initial={"input_payload": pretty_json(execution.input_payload)})
    if request.method == "POST" and form.is_valid():
        payload = form.cleaned_data["input_payload"] or None
        try:
            new = operator.rerun(Actor.console(request.user), execution, payload)
        except ServiceError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Re-run started as a new execution (from {execution.name}).")
            return redirect("console:execution-detail", pk=new.pk)
    return _action_page(request, execution, "rerun", form)


@require_POST
@require(VIEW_EXECUTION, OPERATE_EXECUTION)
def execution_pause(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    return _quick_action(request, pk, operator.pause, "Paused: no invocations until resumed; timers go on.")


@require_POST
@require(VIEW_EXECUTION, OPERATE_EXECUTION)
def execution_resume(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    return _quick_action(request, pk, operator.resume, "Resumed.")


def _quick_action(request: HtmxHttpRequest, pk: int, action: Callable[..., Any], note: str) -> HttpResponse:
    """A reversible action without a confirmation page: do it, then back to the detail page."""
    execution = execution_get_for_user(request.user, pk, operate=True)
    form = OptionalReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The reason is too long (500 characters at most).")
    elif not _performed(request, form, note, action, execution, form.cleaned_data["reason"]):
        messages.error(request, " ".join(form.non_field_errors()))
    return redirect("console:execution-detail", pk=execution.pk)


@require_http_methods(["GET", "POST"])
@require(VIEW_EXECUTION, COMPLETE_CALLBACK)
def callback_complete(request: HtmxHttpRequest, pk: int, operation_id: str) -> HttpResponse:
    execution = execution_get_for_user(request.user, pk, complete_callback=True)
    op = _callback_operation(execution, operation_id)
    outcome = request.POST.get("outcome")
    expected = expected_result(op, request.user.get_username())  # an approval's or a verification's shape
    succeed = CallbackSucceedForm(
        request.POST if outcome == "succeed" else None, prefix="succeed", initial={"result": expected.initial}
    )
    fail = CallbackFailForm(request.POST if outcome == "fail" else None, prefix="fail")
    chosen = {"succeed": succeed, "fail": fail}.get(outcome or "")
    if chosen is not None and _callback_done(request, execution, op, chosen):
        return redirect("console:execution-detail", pk=execution.pk)
    open_execution = allows(execution.status, ExecutionAction.COMPLETE_CALLBACK)
    waiting = op.status == OperationStatus.STARTED and open_execution
    extra = {
        "operation": op,
        "callback_waiting": waiting,
        "succeed_form": succeed,
        "fail_form": fail,
        "callback_label": _label(execution, op),
        "expected": expected,
    }
    return _action_page(request, execution, "callback", chosen or succeed, **extra)


def _callback_operation(execution: Execution, operation_id: str) -> Operation:
    callbacks = Operation.objects.filter(type=OperationType.CALLBACK)
    op = callbacks.filter(execution=execution, operation_id=operation_id).first()
    if op is None:
        raise Http404("No such callback")
    return op


def _label(execution: Execution, op: Operation) -> str:
    """The callback's own name (the SDK calls wait_for_callback's CALLBACK "<name> create callback id")."""
    if not op.parent_id:
        return callback_label(op, None)
    return callback_label(
        op, Operation.objects.filter(execution=execution, operation_id=op.parent_id).first()
    )


def _callback_done(request: HtmxHttpRequest, execution: Execution, op: Operation, form: forms.Form) -> bool:
    if not form.is_valid():
        return False
    label, arn = _label(execution, op), execution.arn
    if isinstance(form, CallbackSucceedForm):
        result, note = form.cleaned_data["result"], f"Callback {label} succeeded."
        return _performed(request, form, note, operator.callback_succeed_operation, op, result, arn=arn)
    assert isinstance(form, CallbackFailForm)
    error, note = form.error_object(), f"Callback {label} failed."
    return _performed(request, form, note, operator.callback_fail_operation, op, error, arn=arn)
