"""First-run setup for ``make run``: demo functions and the admin account."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

from django.conf import settings
from django.contrib.auth import get_user_model

ADMIN_USERNAME = "admin"


def demo_setup() -> Iterator[str]:
    from examples.registry import DEMO_FUNCTIONS
    from executions.functions import function_register

    for demo in DEMO_FUNCTIONS:
        function_register(
            name=demo.name,
            handler=demo.handler,
            durable=demo.durable,
            description=demo.description,
            execution_timeout=demo.execution_timeout,
        )
    yield f"Registered {len(DEMO_FUNCTIONS)} demo functions: " + ", ".join(
        demo.name for demo in DEMO_FUNCTIONS
    )
    yield from _ensure_admin()


def _ensure_admin() -> Iterator[str]:
    """Create the admin on first run with a random password kept in a git-ignored file."""
    password_file = settings.BASE_DIR / ".admin-password"
    users = get_user_model().objects
    if not users.filter(username=ADMIN_USERNAME).exists():
        password = secrets.token_urlsafe(12)
        users.create_superuser(ADMIN_USERNAME, email="", password=password)
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        yield f"Created the admin account. Login: {ADMIN_USERNAME} / {password}"
    elif password_file.exists():
        yield f"Login: {ADMIN_USERNAME} / {password_file.read_text().strip()}"
    else:
        yield f"Login: {ADMIN_USERNAME} (password set earlier; `manage.py changepassword admin` resets it)"
