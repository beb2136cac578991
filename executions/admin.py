"""Django admin: access keys, and read-only views of the engine's tables.

State changes go through ``executions.services`` (CLI, API, console), so the
engine's tables are read-only here; an admin edit would bypass the
transitions, the history and the wake-up hints.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from executions.api import access_keys
from executions.models import (
    AccessKey,
    BulkJob,
    Execution,
    Function,
    FunctionVersion,
    HistoryEvent,
    Invocation,
    Operation,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class FunctionVersionInline(admin.TabularInline):
    """Each version's pinned configuration, read-only: versions never change once written."""

    model = FunctionVersion
    fields = ("version", "handler", "timeout_seconds", "memory_mb", "environment", "created_at")
    readonly_fields = fields
    ordering = ("-version",)
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Function)
class FunctionAdmin(admin.ModelAdmin):
    """Registering, new handlers and new Lambda settings go through ``durable functions register``.

    Timeout, memory and environment are read-only here: changing them must make a new
    version (``functions.function_register``), which an admin save would not.
    """

    list_display = (
        "name",
        "version",
        "durable",
        "enabled",
        "timeout_seconds",
        "memory_mb",
        "handler",
        "updated_at",
    )
    list_filter = ("durable", "enabled")
    search_fields = ("name", "handler")
    readonly_fields = (
        "name",
        "handler",
        "version",
        "durable",
        "timeout_seconds",
        "memory_mb",
        "environment",
        "created_at",
        "updated_at",
    )
    fields = (*readonly_fields, "description", "enabled", "execution_timeout", "retention_days")
    inlines = (FunctionVersionInline,)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # executions reference it (PROTECT)


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyAdmin):
    list_display = ("name", "function", "status", "started_at", "ended_at", "invocation_count")
    list_filter = ("status", "function")
    search_fields = ("arn", "name")
    date_hierarchy = "started_at"
    list_select_related = ("function",)


@admin.register(Operation)
class OperationAdmin(ReadOnlyAdmin):
    list_display = ("operation_id", "execution", "type", "sub_type", "name", "status", "started_at")
    list_filter = ("type", "status")
    search_fields = ("operation_id", "name", "execution__arn")
    list_select_related = ("execution",)


@admin.register(HistoryEvent)
class HistoryEventAdmin(ReadOnlyAdmin):
    list_display = ("execution", "event_id", "event_type", "name", "timestamp")
    list_filter = ("event_type",)
    search_fields = ("execution__arn", "name")
    list_select_related = ("execution",)


@admin.register(Invocation)
class InvocationAdmin(ReadOnlyAdmin):
    list_display = ("execution", "number", "outcome", "worker", "started_at", "ended_at")
    list_filter = ("outcome",)
    search_fields = ("execution__arn", "request_id")
    list_select_related = ("execution",)


@admin.register(AccessKey)
class AccessKeyAdmin(admin.ModelAdmin):
    """Keys are issued here or with ``durable keys create``; the secret is shown once."""

    list_display = ("access_key_id", "description", "acts_as", "created_at", "last_used_at", "revoked_at")
    list_select_related = ("user",)
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("access_key_id", "description")
    readonly_fields = ("access_key_id", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke",)

    def get_fields(self, request: HttpRequest, obj: AccessKey | None = None) -> list[str]:
        if obj is None:
            return ["description", "user"]
        return ["access_key_id", "description", "user", "created_at", "last_used_at", "revoked_at"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: the row records who had access and when

    @admin.display(description="acts as", ordering="user__username")
    def acts_as(self, obj: AccessKey) -> str:
        return access_keys.key_acts_as(obj)

    def get_form(self, request: HttpRequest, obj: AccessKey | None = None, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, **kwargs)
        if "user" in form.base_fields:
            form.base_fields["user"].help_text = (
                "The key acts with this person's permissions (their groups). "
                "Left empty, it is the deployment's admin key: every API operation."
            )
        return form

    def save_model(self, request: HttpRequest, obj: AccessKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = access_keys.key_create(description=obj.description, user=obj.user)
        obj.pk = issued.key.pk
        # Kept on the request only, for response_add: never in a message (messages may
        # travel in a cookie) or in the session.
        request._issued_access_key = issued  # type: ignore[attr-defined]

    def response_add(
        self, request: HttpRequest, obj: AccessKey, post_url_continue: Any = None
    ) -> HttpResponse:
        issued = getattr(request, "_issued_access_key", None)
        if issued is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "issued": issued,
            "region": settings.DURABLE_REGION,
            "endpoint": request.build_absolute_uri("/").rstrip("/"),
            "opts": self.model._meta,
        }
        # The admin's views are never_cache (no-store): the page is not kept anywhere.
        return TemplateResponse(request, "admin/executions/accesskey/created.html", context)

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[AccessKey]) -> None:
        for key in queryset.filter(revoked_at__isnull=True):
            access_keys.key_revoke(key.access_key_id)
        messages.success(request, "Revoked.")


@admin.register(BulkJob)
class BulkJobAdmin(ReadOnlyAdmin):
    """Bulk stop/redrive jobs started from the console (each per-execution action is audited)."""

    list_display = ("id", "action", "status", "processed", "total", "created_by_name", "created_at")
    list_filter = ("action", "status")
