"""Console forms: they validate and normalize input; the operator services do the work."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from django import forms
from django.conf import settings

from executions.engine.errors import InvalidParameterValue
from executions.engine.functions import (
    FUNCTION_NAME_PATTERN,
    InvalidFunctionConfig,
    check_environment,
    check_handler_kind,
    check_label_field,
    check_memory_mb,
    check_timeout_seconds,
    parse_environment_lines,
)
from executions.models import (
    DEFAULT_FUNCTION_MEMORY_MB,
    DEFAULT_FUNCTION_TIMEOUT_SECONDS,
    LABEL_FIELD_MAX_LENGTH,
    AuditChannel,
    BulkJob,
)

T = TypeVar("T")

JSON_ATTRS = {"class": "json-editor", "rows": 12, "spellcheck": "false", "autocomplete": "off"}


class JSONTextField(forms.CharField):
    """A textarea whose text must be JSON; the cleaned value is the text, unchanged."""

    widget = forms.Textarea(attrs=JSON_ATTRS)

    def clean(self, value: Any) -> str:
        text = super().clean(value)
        if text in ("", None):
            return text
        try:
            json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise forms.ValidationError("Not valid JSON here: it is nested too deeply") from exc
        return text


REASON_REQUIRED = "Say why: the reason is kept in the audit log."


def reason_field() -> forms.CharField:
    """The one rule for reasons: stop and redrive say why, on one execution or in bulk.

    Required, so the label says "(required)" and the textarea carries ``required``
    (``_field.html`` follows ``field.required``); the reason lands in the audit log.
    """
    return forms.CharField(
        max_length=500,
        error_messages={"required": REASON_REQUIRED},
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Why? (kept in the audit log)"}),
    )


class ReasonForm(forms.Form):
    """Destructive actions (stop, redrive) say why; the reason lands in the audit log."""

    reason = reason_field()


class RedriveForm(ReasonForm):
    """Redrive: a reason, and whether interrupted operations may run again (audited)."""

    rerun_interrupted = forms.BooleanField(
        required=False,
        label="Also run the interrupted operations again",
        help_text="They may have taken effect already (a card charged): running them again can repeat it. "
        "Unticked, they stay failed and the handler's own error path decides.",
    )


class OptionalReasonForm(forms.Form):
    reason = forms.CharField(max_length=500, required=False)


class CallbackSucceedForm(forms.Form):
    result = JSONTextField(
        label="Result (JSON)",
        help_text="The handler receives this as the callback's result.",
        initial="{}",
    )


class CallbackFailForm(forms.Form):
    error_type = forms.CharField(max_length=256, required=False, initial="ManualFailure")
    error_message = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 3}))

    def error_object(self) -> dict[str, str]:
        error = {"ErrorMessage": self.cleaned_data["error_message"]}
        if self.cleaned_data.get("error_type"):
            error["ErrorType"] = self.cleaned_data["error_type"]
        return error


class RerunForm(forms.Form):
    input_payload = JSONTextField(label="Input (JSON)", required=False)


class StartForm(forms.Form):
    name = forms.CharField(
        max_length=64,
        required=False,
        help_text="Optional execution name (letters, digits, - and _); starting a name twice is idempotent.",
    )
    input_payload = JSONTextField(label="Input (JSON)", required=False, initial="{}")


class FunctionForm(forms.Form):
    name = forms.CharField(max_length=64, help_text="Letters, digits, - and _; cannot change later.")
    handler = forms.CharField(
        max_length=255,
        help_text="Import path module.path:attribute (or an http(s):// URL for a remote handler).",
        widget=forms.TextInput(attrs={"class": "mono", "spellcheck": "false"}),
    )
    durable = forms.BooleanField(
        required=False,
        initial=True,
        help_text="Durable handlers are wrapped with @durable_execution; plain ones run once per invoke.",
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    execution_timeout = forms.IntegerField(
        min_value=1,
        max_value=31_622_400,
        initial=settings.DURABLE_DEFAULT_EXECUTION_TIMEOUT_SECONDS,
        help_text="Seconds a whole durable execution may take, across all its invocations.",
    )
    retention_days = forms.IntegerField(min_value=1, max_value=90, initial=14)
    # The Lambda configuration: no min/max here, so the range and its message are the service's.
    # Blank Timeout or Memory keeps the current value (the default for a new function).
    timeout_seconds = forms.IntegerField(
        label="Timeout (s)",
        required=False,
        initial=DEFAULT_FUNCTION_TIMEOUT_SECONDS,
        help_text="Seconds one invocation may run, 1 to 900. A change makes a new version.",
    )
    memory_mb = forms.IntegerField(
        label="Memory (MB)",
        required=False,
        initial=DEFAULT_FUNCTION_MEMORY_MB,
        help_text="Memory one invocation may use, 128 to 10,240 MB. A change makes a new version.",
    )
    environment = forms.CharField(
        label="Environment variables",
        required=False,
        strip=False,  # a value may end in spaces
        widget=forms.Textarea(
            attrs={"rows": 4, "class": "mono", "spellcheck": "false", "autocomplete": "off"}
        ),
        help_text="One KEY=VALUE per line; at most 4 KB in all. A change makes a new version.",
    )
    label_field = forms.CharField(
        label="Label field",
        required=False,
        max_length=LABEL_FIELD_MAX_LENGTH,
        widget=forms.TextInput(attrs={"class": "mono", "spellcheck": "false", "placeholder": "order_id"}),
        help_text="The input field whose value labels each execution in the console (order_id, or "
        "customer.id for a nested one). Executions started from now on get it.",
    )

    field_order = (
        "name",
        "handler",
        "durable",
        "timeout_seconds",
        "memory_mb",
        "environment",
        "label_field",
        "description",
        "execution_timeout",
        "retention_days",
    )

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if editing:
            self.fields["name"].disabled = True

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if not FUNCTION_NAME_PATTERN.match(name):
            raise forms.ValidationError("Use letters, digits, - and _ (1 to 64).")
        return name

    def clean_timeout_seconds(self) -> int | None:
        value = self.cleaned_data["timeout_seconds"]
        return None if value is None else _service_checked(check_timeout_seconds, value)

    def clean_memory_mb(self) -> int | None:
        value = self.cleaned_data["memory_mb"]
        return None if value is None else _service_checked(check_memory_mb, value)

    def clean_environment(self) -> dict[str, str] | None:
        """The variables as a dict. An empty box means none (the edit form shows the current
        ones); a POST without the field at all keeps them, as the service's None does."""
        if self.is_bound and self.add_prefix("environment") not in self.data:
            return None
        lines = self.cleaned_data["environment"].splitlines()
        return _service_checked(_checked_environment_lines, lines)

    def clean_label_field(self) -> str | None:
        """The field's text checked by the registry; a POST without it keeps the current one."""
        if self.is_bound and self.add_prefix("label_field") not in self.data:
            return None
        return _service_checked(check_label_field, self.cleaned_data["label_field"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        path = cleaned.get("handler")
        if not path:
            return cleaned
        try:
            check_handler_kind(path, durable=bool(cleaned.get("durable")))
        except InvalidFunctionConfig as exc:
            self.add_error(exc.field, exc.message)
        except InvalidParameterValue as exc:
            self.add_error("handler", exc.message)
        return cleaned


def _checked_environment_lines(lines: list[str]) -> dict[str, str]:
    return check_environment(parse_environment_lines(lines))


def _service_checked(check: Callable[[Any], T], value: Any) -> T:
    """Run one of the registry's checks, its refusal becoming this field's error."""
    try:
        return check(value)
    except InvalidFunctionConfig as exc:
        raise forms.ValidationError(exc.message) from exc


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False)
    action = forms.CharField(required=False)
    channel = forms.ChoiceField(required=False, choices=[("", "any channel"), *AuditChannel.choices])
    target = forms.CharField(required=False)
    after = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    before = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))


class BulkForm(forms.Form):
    action = forms.ChoiceField(choices=BulkJob.ACTIONS)
    scope = forms.ChoiceField(choices=[("selection", "selection"), ("filter", "filter")])
    ids = forms.TypedMultipleChoiceField(coerce=int, required=False)
    query = forms.CharField(required=False)
    reason = reason_field()  # the rule of the single actions; asked for on the confirmation page
    rerun_interrupted = forms.BooleanField(required=False)
    confirmed = forms.BooleanField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Any integer id is acceptable here; the job skips ids that do not exist.
        self.fields["ids"].valid_value = lambda value: str(value).isdigit()  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not cleaned.get("confirmed"):
            # The list's POST only asks for the confirmation page, which asks for the reason.
            self.errors.pop("reason", None)
            cleaned["reason"] = ""
        if cleaned.get("scope") == "selection" and not cleaned.get("ids"):
            raise forms.ValidationError(
                "Select at least one execution, or act on everything the filter matches."
            )
        return cleaned
