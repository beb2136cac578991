"""Groups and what each may do: admins, operators, approvers, viewers (docs/architecture.md)."""

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


# --- the Lambda-compatible API ---------------------------------------------------------------
# A signed request acts with its key owner's permissions: the same groups as the console. A key
# without an owner is the deployment's admin key and may run every operation.
VIEW_EXECUTION = "executions.view_execution"
OPERATE_EXECUTION = "executions.operate_execution"
COMPLETE_CALLBACK = "executions.complete_callback"
DELETE_EXECUTION = "executions.delete_execution"
VIEW_FUNCTION = "executions.view_function"

_READ_EXECUTIONS = (VIEW_EXECUTION,)
_OPERATE = (VIEW_EXECUTION, OPERATE_EXECUTION)

API_OPERATION_PERMISSIONS: dict[str, tuple[str, ...]] = {
    # viewers: reading
    "ListFunctions": (VIEW_FUNCTION,),
    "GetFunction": (VIEW_FUNCTION,),
    "ListDurableExecutionsByFunction": _READ_EXECUTIONS,
    "GetDurableExecution": _READ_EXECUTIONS,
    "GetDurableExecutionHistory": _READ_EXECUTIONS,
    # operators: acting. Invoke runs code, and starts executions as the console's Start does.
    "Invoke": (VIEW_FUNCTION, OPERATE_EXECUTION),
    "StopDurableExecution": _OPERATE,
    "PauseDurableExecution": _OPERATE,
    "ResumeDurableExecution": _OPERATE,
    # The SDK's own half of the protocol, called by a handler's runtime (a remote handler's
    # LambdaClient): it advances the execution, so it is operating it. The state read belongs
    # with it: it needs the current checkpoint token, which only a running invocation holds.
    "CheckpointDurableExecution": _OPERATE,
    "GetDurableExecutionState": _OPERATE,
    # Completing a callback is the console's "complete by hand".
    "SendDurableExecutionCallbackSuccess": (VIEW_EXECUTION, COMPLETE_CALLBACK),
    "SendDurableExecutionCallbackFailure": (VIEW_EXECUTION, COMPLETE_CALLBACK),
    "SendDurableExecutionCallbackHeartbeat": (VIEW_EXECUTION, COMPLETE_CALLBACK),
    # admins: deleting (function management is not offered over the API; it is admins' too).
    "DeleteDurableExecution": (VIEW_EXECUTION, DELETE_EXECUTION),
}
