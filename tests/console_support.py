"""Helpers for the console tests: a fixed cast of users, one per group, and logged-in clients.

Functions, not fixtures: each test module declares the few fixtures it needs
on top of these (fixtures imported from another module would shadow names).
"""

from __future__ import annotations

import datetime
import itertools
import json
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from durable_console.bootstrap import register_demo_functions
from executions.access import ensure_groups
from executions.models import Execution, Function
from tests.engine_driver import EngineDriver, refreshed

ROLES = ("admin", "operator", "approver", "viewer", "nobody")
PASSWORD = "correct horse battery staple"  # set it on a user where a test logs in for real


@dataclass(frozen=True)
class Cast:
    """One user per group (``nobody`` has none), by role name."""

    users: dict[str, User]

    def __getitem__(self, role: str) -> User:
        return self.users[role]

    def client(self, role: str | None, *, csrf_checks: bool = False) -> Client:
        """A client logged in as ``role`` (anonymous for None)."""
        client = Client(enforce_csrf_checks=csrf_checks)
        if role is not None:
            client.force_login(self.users[role])
        return client


def make_cast() -> Cast:
    ensure_groups()
    groups = {"admin": "admins", "operator": "operators", "approver": "approvers", "viewer": "viewers"}
    users = {}
    for role in ROLES:
        user = User.objects.create_user(role)  # no password: hashing one costs ~0.3 s
        if role in groups:
            user.groups.add(Group.objects.get(name=groups[role]))
        users[role] = user
    return Cast(users)


def register_demos() -> None:
    register_demo_functions()


def finished(driver: EngineDriver, execution: Execution) -> Execution:
    driver.run_until(lambda: refreshed(execution).is_terminal)
    return refreshed(execution)


def as_json(value: Any) -> str:
    return json.dumps(value)


_row_serial = itertools.count(1)


def execution_row(function: Function, status: str, *, label: str = "") -> Execution:
    """An execution row in ``status`` and nothing else (no operations): what list, count and
    bulk tests need. Each starts a minute before the last; open ones have no end."""
    serial = next(_row_serial)
    now = timezone.now()
    return Execution.objects.create(
        function=function,
        function_version=1,
        handler=function.handler,
        name=f"row-{serial}",
        invocation_id=f"inv-row-{serial}",
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:{function.name}:$LATEST/durable-execution/row-{serial}",
        status=status,
        label=label,
        started_at=now - datetime.timedelta(minutes=serial),
        ended_at=None if status in ("RUNNING", "PAUSED") else now,
        execution_timeout=3600,
    )
