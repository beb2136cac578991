"""People and API keys, as the console's admin pages change them: each change audited.

The console's Users and API keys pages call these (never the ORM): a new user's password
passes the validators before anything is written, the lockout rules hold whoever asks, and
each change is one transaction with its audit entry. Keys are issued and revoked by the same
functions as ``durable keys`` (``executions.api.access_keys``); this module adds the audit
entry and the rules about owners.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Group, User
from django.db import transaction

from executions import audit
from executions.access import GROUP_PERMISSIONS
from executions.api import access_keys
from executions.audit import Actor
from executions.models import AccessKey

ADMINS = "admins"
CONSOLE_GROUPS = tuple(GROUP_PERMISSIONS)


class Refused(Exception):
    """A change the rules forbid; the message says why, for the form."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def user_create(
    actor: Actor, *, username: str, password: str, email: str = "", groups: Iterable[str] = ()
) -> User:
    """A new active user with this password (validated first) and these console groups.

    Raises ``django.core.exceptions.ValidationError`` for a password the validators refuse.
    """
    users = get_user_model().objects
    if users.filter(username__iexact=username).exists():
        raise Refused(f"A user named {username} exists already.")
    candidate = get_user_model()(username=username, email=email)
    password_validation.validate_password(password, candidate)
    chosen = _groups(groups)
    with transaction.atomic():
        user = users.create_user(username=username, email=email, password=password)
        user.groups.set(chosen)
        audit.record(actor, "user.create", username, groups=sorted(g.name for g in chosen))
    return user


def user_set_active(actor: Actor, user: User, active: bool) -> None:
    """Deactivate (their logins, sessions' permissions and API keys stop) or reactivate."""
    _check_may_manage(actor, user)
    if not active and _is_self(actor, user):
        raise Refused("You cannot deactivate yourself: ask another admin.")
    with transaction.atomic():
        type(user).objects.filter(pk=user.pk).update(is_active=active)
        user.is_active = active
        audit.record(actor, "user.reactivate" if active else "user.deactivate", user.get_username())


def user_set_groups(actor: Actor, user: User, groups: Iterable[str]) -> None:
    """Replace the user's console groups (other groups they may be in are kept)."""
    _check_may_manage(actor, user)
    chosen = _groups(groups)
    names = {group.name for group in chosen}
    if _is_self(actor, user) and ADMINS not in names and user.groups.filter(name=ADMINS).exists():
        raise Refused("You cannot leave the admins group yourself: ask another admin.")
    with transaction.atomic():
        kept = user.groups.exclude(name__in=CONSOLE_GROUPS)
        user.groups.set([*kept, *chosen])
        audit.record(actor, "user.groups", user.get_username(), groups=sorted(names))


def key_issue(actor: Actor, *, description: str, owner: User | None) -> access_keys.IssuedKey:
    """A new key acting as ``owner``; only a superuser may issue an ownerless (admin) key.

    An ownerless key outlives whoever made it (deactivating a person shuts only their own
    keys), so an admin on their way out could otherwise keep the API's every permission.
    """
    if owner is None and not _is_superuser(actor):
        raise Refused("Only a superuser may issue the deployment's admin key (no owner).")
    if owner is not None and not owner.is_active:
        raise Refused(f"{owner.get_username()} is deactivated.")
    with transaction.atomic():
        issued = access_keys.key_create(description=description, user=owner)
        audit.record(
            actor,
            "key.create",
            issued.access_key_id,
            acts_as=access_keys.key_acts_as(issued.key),
            description=issued.key.description,
        )
    return issued


def key_revoke(actor: Actor, key: AccessKey) -> AccessKey:
    """Revoke at once; revoking again keeps the first time and writes no second entry."""
    with transaction.atomic():
        revoked = access_keys.key_revoke(key.access_key_id)
        if key.revoked_at is None:
            audit.record(actor, "key.revoke", key.access_key_id, acts_as=access_keys.key_acts_as(key))
    return revoked


def _groups(names: Iterable[str]) -> list[Group]:
    wanted = set(names)
    unknown = wanted - set(CONSOLE_GROUPS)
    if unknown:
        raise Refused(f"Unknown group: {', '.join(sorted(unknown))}")
    return list(Group.objects.filter(name__in=wanted))


def _is_self(actor: Actor, user: User) -> bool:
    return actor.user is not None and actor.user.pk == user.pk


def _is_superuser(actor: Actor) -> bool:
    return bool(getattr(actor.user, "is_superuser", False))


def _check_may_manage(actor: Actor, user: User) -> None:
    # Superusers hold every permission whatever their groups; only another superuser
    # (or manage.py) may change them, so an admin cannot lock the deployment's owner out.
    if user.is_superuser and not _is_superuser(actor):
        raise Refused(f"{user.get_username()} is a superuser: only a superuser may change them.")
