"""Groups and what each may do (DESIGN.md §6): admins, operators, approvers, viewers."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission

# Operators and admins see every approval request and may decide any of them
# (deciding completes a callback, which they may do by hand anyway).
APPROVALS_FOR_ALL = [
    "approvals.use_inbox",
    "approvals.view_all_requests",
    "approvals.decide_any_request",
]

GROUP_PERMISSIONS: dict[str, list[str]] = {
    "admins": [
        "executions.view_execution",
        "executions.operate_execution",
        "executions.complete_callback",
        "executions.delete_execution",
        "executions.view_function",
        "executions.add_function",
        "executions.change_function",
        "executions.view_auditentry",
        "executions.view_accesskey",
        "executions.add_accesskey",
        "executions.change_accesskey",
        "auth.view_user",
        "auth.add_user",
        "auth.change_user",
        *APPROVALS_FOR_ALL,
    ],
    "operators": [
        "executions.view_execution",
        "executions.operate_execution",
        "executions.complete_callback",
        "executions.view_function",
        "executions.view_auditentry",
        *APPROVALS_FOR_ALL,
    ],
    # Their inbox only: requests naming them or one of their groups.
    "approvers": ["approvals.use_inbox"],
    "viewers": ["executions.view_execution", "executions.view_function"],
}


def ensure_groups(**_: Any) -> None:
    """Create the groups and (re)grant their permissions; safe to run on every migrate."""
    for name, codenames in GROUP_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        permissions = [_permission(codename) for codename in codenames]
        group.permissions.add(*[p for p in permissions if p is not None])


def _permission(dotted: str) -> Permission | None:
    app_label, codename = dotted.split(".")
    return Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
