"""Who may see and do what in the console: one permission-checked accessor per entity.

Views, the websocket consumer and the bulk job all go through these, so a
permission rule lives in exactly one place.
Permissions come from the groups in ``executions.access``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse

from executions.models import BulkJob, Execution, Function

VIEW_EXECUTION = "executions.view_execution"
OPERATE_EXECUTION = "executions.operate_execution"
COMPLETE_CALLBACK = "executions.complete_callback"
VIEW_FUNCTION = "executions.view_function"
ADD_FUNCTION = "executions.add_function"
CHANGE_FUNCTION = "executions.change_function"
VIEW_AUDIT = "executions.view_auditentry"

User = AbstractBaseUser | AnonymousUser
View = TypeVar("View", bound=Callable[..., HttpResponse])


def check(user: User, *perms: str) -> None:
    """Raise PermissionDenied unless an active, logged-in user has every permission."""
    if not user.is_authenticated or not user.has_perms(perms):  # type: ignore[union-attr]
        raise PermissionDenied


def allowed(user: User, *perms: str) -> bool:
    return bool(user.is_authenticated and user.has_perms(perms))  # type: ignore[union-attr]


def require(*perms: str) -> Callable[[View], View]:
    """Login (redirect) and then these permissions (403) before the view runs."""

    def decorate(view: View) -> View:
        @wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            check(request.user, *perms)
            return view(request, *args, **kwargs)

        return login_required(checked)  # type: ignore[return-value]

    return decorate


def execution_get_for_user(
    user: User, arn_or_pk: int | str, *, operate: bool = False, complete_callback: bool = False
) -> Execution:
    """The execution, if this user may see it (and operate on it / complete its callbacks)."""
    perms = [VIEW_EXECUTION]
    if operate:
        perms.append(OPERATE_EXECUTION)
    if complete_callback:
        perms.append(COMPLETE_CALLBACK)
    check(user, *perms)
    lookup = {"pk": int(arn_or_pk)} if str(arn_or_pk).isdigit() else {"arn": str(arn_or_pk)}
    execution = Execution.objects.select_related("function").filter(**lookup).first()
    if execution is None:
        raise Http404("No such execution")
    return execution


def function_get_for_user(user: User, name: str, *, change: bool = False, operate: bool = False) -> Function:
    """The registered function, if this user may see it (and edit it / start executions)."""
    perms = [VIEW_FUNCTION]
    if change:
        perms.append(CHANGE_FUNCTION)
    if operate:
        perms.append(OPERATE_EXECUTION)
    check(user, *perms)
    function = Function.objects.filter(name=name).first()
    if function is None:
        raise Http404("No such function")
    return function


def bulk_job_get_for_user(user: User, pk: int) -> BulkJob:
    """A bulk job: visible to whoever may operate executions (it acts on many of them)."""
    check(user, VIEW_EXECUTION, OPERATE_EXECUTION)
    job = BulkJob.objects.filter(pk=pk).first()
    if job is None:
        raise Http404("No such bulk job")
    return job
