"""Read-only admin pages: approvals change only through ``approvals.services``."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from approvals.models import ApprovalRequest, Decision, EmailVerification


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class DecisionInline(admin.TabularInline):
    model = Decision
    extra = 0
    can_delete = False
    fields = ("reviewer_name", "outcome", "channel", "comment", "decided_at")
    readonly_fields = fields


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyAdmin):
    list_display = ("title", "status", "required", "created_at", "expires_at", "decided_by_name")
    list_filter = ("status",)
    search_fields = ("title", "execution__arn")
    exclude = ("callback_id_hash",)
    inlines = [DecisionInline]


@admin.register(EmailVerification)
class EmailVerificationAdmin(ReadOnlyAdmin):
    list_display = ("email", "status", "created_at", "expires_at", "confirmed_at")
    list_filter = ("status",)
    search_fields = ("email",)
    exclude = ("callback_id_hash", "nonce")
