"""Admin pages: users and their groups, API keys. For the admins group (and superusers).

Each view requires the permissions only the admins group holds (``executions.access``),
so operators, approvers and viewers get 403. Changes go through ``executions.accounts``
(audited, with the lockout rules); every form is a CSRF-checked POST. A new key's secret is
rendered once, in the response to the POST that made it, and stored nowhere in the clear.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from executions import accounts
from executions.audit import Actor
from executions.console.admin_forms import GroupsForm, KeyCreateForm, UserCreateForm
from executions.console.htmx import HtmxHttpRequest
from executions.console.permissions import require
from executions.models import AccessKey

# Held by the admins group only (executions.access.GROUP_PERMISSIONS).
VIEW_USERS = ("auth.view_user", "auth.change_user")
ADD_USER = "auth.add_user"
VIEW_KEYS = ("executions.view_accesskey", "executions.change_accesskey")
ADD_KEY = "executions.add_accesskey"


# --- users ----------------------------------------------------------------------------------


@require_GET
@require(*VIEW_USERS)
def user_list(request: HtmxHttpRequest) -> HttpResponse:
    users = (
        get_user_model()
        .objects.annotate(active_keys=Count("access_keys", filter=Q(access_keys__revoked_at__isnull=True)))
        .prefetch_related("groups")
        .order_by("-is_active", "username")
    )
    return render(request, "executions/admin/users.html", {"users": users, "can_add": _may_add_user(request)})


@require_http_methods(["GET", "POST"])
@require(*VIEW_USERS, ADD_USER)
def user_create(request: HtmxHttpRequest) -> HttpResponse:
    form = UserCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid() and (user := _created_user(request, form)):
        messages.success(request, f"Created {user.get_username()}.")
        return redirect("console:user-detail", pk=user.pk)
    return render(request, "executions/admin/user_form.html", {"form": form}, status=_status(form))


@require_GET
@require(*VIEW_USERS)
def user_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    user = _user(pk)
    form = GroupsForm(initial={"groups": [g.name for g in user.groups.all()]})
    return _user_page(request, user, form)


@require_POST
@require(*VIEW_USERS)
def user_groups(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    user = _user(pk)
    form = GroupsForm(request.POST)
    if form.is_valid():
        try:
            accounts.user_set_groups(Actor.console(request.user), user, form.cleaned_data["groups"])
        except accounts.Refused as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Saved {user.get_username()}'s groups.")
            return redirect("console:user-detail", pk=user.pk)
    return _user_page(request, user, form, status=400)


@require_POST
@require(*VIEW_USERS)
def user_active(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    user = _user(pk)
    active = request.POST.get("active") == "1"
    try:
        accounts.user_set_active(Actor.console(request.user), user, active)
    except accounts.Refused as exc:
        messages.error(request, exc.message)
    else:
        what = "reactivated" if active else "deactivated: they cannot log in and their API keys are refused"
        messages.success(request, f"{user.get_username()} is {what}.")
    return redirect("console:user-detail", pk=user.pk)


def _user_page(request: HtmxHttpRequest, user: User, form: GroupsForm, status: int = 200) -> HttpResponse:
    context = {
        "person": user,  # not "user": that is the logged-in user in every template
        "form": form,
        "keys": AccessKey.objects.filter(user=user),
        "is_self": user.pk == request.user.pk,
    }
    return render(request, "executions/admin/user_detail.html", context, status=status)


def _created_user(request: HtmxHttpRequest, form: UserCreateForm) -> User | None:
    data = form.cleaned_data
    try:
        return accounts.user_create(
            Actor.console(request.user),
            username=data["username"],
            email=data["email"],
            password=data["password1"],
            groups=data["groups"],
        )
    except ValidationError as exc:  # the password validators
        form.add_error("password1", exc)
    except accounts.Refused as exc:
        form.add_error("username", exc.message)
    return None


def _user(pk: int) -> User:
    user = get_user_model().objects.filter(pk=pk).first()
    if user is None:
        raise Http404("No such user")
    return user


def _may_add_user(request: HtmxHttpRequest) -> bool:
    return bool(request.user.has_perm(ADD_USER))


# --- API keys -------------------------------------------------------------------------------


@require_GET
@require(*VIEW_KEYS)
def key_list(request: HtmxHttpRequest) -> HttpResponse:
    keys = AccessKey.objects.select_related("user").order_by("revoked_at", "-created_at", "-id")
    context = {"keys": keys, "can_add": request.user.has_perm(ADD_KEY)}
    return render(request, "executions/admin/access_keys.html", context)


@require_http_methods(["GET", "POST"])
@require(*VIEW_KEYS, ADD_KEY)
def key_create(request: HtmxHttpRequest) -> HttpResponse:
    ownerless = bool(getattr(request.user, "is_superuser", False))
    form = KeyCreateForm(request.POST or None, initial={"owner": request.user.pk}, allow_ownerless=ownerless)
    if request.method == "POST" and form.is_valid():
        try:
            issued = accounts.key_issue(
                Actor.console(request.user),
                description=form.cleaned_data["description"],
                owner=form.cleaned_data["owner"],
            )
        except accounts.Refused as exc:
            form.add_error(None, exc.message)
        else:
            return _revealed(request, issued)
    return render(request, "executions/admin/access_key_form.html", {"form": form}, status=_status(form))


def _revealed(request: HtmxHttpRequest, issued: Any) -> HttpResponse:
    """The only page that ever shows the secret: not cached, not stored, not redirected to."""
    response = render(request, "executions/admin/access_key_created.html", {"issued": issued})
    add_never_cache_headers(response)  # no-store: Back or a shared cache must not bring it back
    return response


@require_http_methods(["GET", "POST"])
@require(*VIEW_KEYS)
def key_revoke(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    key = AccessKey.objects.select_related("user").filter(pk=pk).first()
    if key is None:
        raise Http404("No such access key")
    if request.method == "POST":
        accounts.key_revoke(Actor.console(request.user), key)
        messages.success(request, f"{key.access_key_id} is revoked: requests signed with it are refused.")
        return redirect("console:key-list")
    return render(request, "executions/admin/access_key_revoke.html", {"key": key})


def _status(form: Any) -> int:
    return 400 if form.is_bound and form.errors else 200
