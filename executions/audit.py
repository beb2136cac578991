"""The audit trail: who did what, when, through which channel."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from executions.engine import clock
from executions.models import AuditChannel, AuditEntry


@dataclass(frozen=True)
class Actor:
    """The person (or key, or process) behind an action."""

    channel: str
    name: str
    user: AbstractBaseUser | None = None

    @classmethod
    def console(cls, user: AbstractBaseUser | AnonymousUser) -> Actor:
        return cls(AuditChannel.CONSOLE, user.get_username(), user if user.is_authenticated else None)

    @classmethod
    def api(cls, access_key_id: str, user: AbstractBaseUser | None = None) -> Actor:
        return cls(AuditChannel.API, access_key_id, user)

    @classmethod
    def cli(cls) -> Actor:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):
            name = "cli"
        return cls(AuditChannel.CLI, name)

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        return cls(AuditChannel.SYSTEM, name)


def record(actor: Actor, action: str, target: str = "", **details: Any) -> AuditEntry:
    """Write one audit row (inside the caller's transaction, so it commits with the change)."""
    return AuditEntry.objects.create(
        actor=actor.user,
        actor_name=actor.name[:150],
        channel=actor.channel,
        action=action,
        target=target[:512],
        details=details,
        created_at=clock.now(),
    )
