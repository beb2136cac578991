"""First-run setup for ``make run``: demo functions, admin and reviewer accounts, a development API key."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator

from django.conf import settings
from django.contrib.auth import get_user_model

from approvals.bootstrap import ensure_demo_reviewer
from examples.registry import DEMO_FUNCTIONS
from executions.api import access_keys
from executions.engine.functions import function_register
from executions.models import AccessKey

ADMIN_USERNAME = "admin"


def register_demo_functions() -> None:
    """Register (or update) every demo function of ``examples.registry``."""

    for demo in DEMO_FUNCTIONS:
        function_register(
            name=demo.name,
            handler=demo.handler,
            durable=demo.durable,
            description=demo.description,
            execution_timeout=demo.execution_timeout,
            label_field=demo.label_field,
        )


def demo_setup() -> Iterator[str]:

    register_demo_functions()
    yield f"Registered {len(DEMO_FUNCTIONS)} demo functions: " + ", ".join(
        demo.name for demo in DEMO_FUNCTIONS
    )
    yield from _ensure_admin()
    yield from ensure_demo_reviewer()
    yield from _ensure_dev_key()


def _ensure_admin() -> Iterator[str]:
    """Create the admin on first run with a random password kept in a git-ignored file."""
    # Beside the database it belongs to (var/ is git-ignored), so test or scratch databases
    # set up with another DURABLE_VAR_DIR never overwrite the real login.
    password_file = settings.VAR_DIR / "admin-password"
    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    users = get_user_model().objects
    if not users.filter(username=ADMIN_USERNAME).exists():
        password = secrets.token_urlsafe(12)
        users.create_superuser(ADMIN_USERNAME, email="", password=password)
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        yield f"Created the admin account. Login: {ADMIN_USERNAME} / {password}"
    elif password_file.exists():
        # Printed only when created: terminal scrollback and CI logs keep what is printed.
        yield f"Login: {ADMIN_USERNAME} (password in {password_file})"
    else:
        yield f"Login: {ADMIN_USERNAME} (password set earlier; `manage.py changepassword admin` resets it)"


def _ensure_dev_key() -> Iterator[str]:
    """A development API key, created once; its secret lives in the git-ignored var/."""

    key_file = settings.VAR_DIR / "dev-access-key.json"
    stored = json.loads(key_file.read_text()) if key_file.exists() else {}
    usable = AccessKey.objects.filter(
        access_key_id=stored.get("AccessKeyId", ""), revoked_at__isnull=True
    ).exists()
    port = os.environ.get("PORT", "8000")
    if usable:  # the secret was printed when the key was made; say where it is kept
        yield (
            f"Lambda API: development key {stored['AccessKeyId']} (secret in {key_file}); "
            f"endpoint http://127.0.0.1:{port}"
        )
        return
    # First run, a fresh database, or the key was revoked. The deployment's admin key: no owner.
    stored = access_keys.key_create(description="development key (make run)").as_json()
    key_file.write_text(json.dumps(stored, indent=2) + "\n")
    key_file.chmod(0o600)
    yield f"Created a development API key (kept in {key_file})."
    yield (
        "Lambda API: AWS_ACCESS_KEY_ID={AccessKeyId} AWS_SECRET_ACCESS_KEY={SecretAccessKey} "
        "AWS_DEFAULT_REGION={region} aws lambda list-functions "
        "--endpoint-url http://127.0.0.1:{port}"
    ).format(**stored, region=settings.DURABLE_REGION, port=port)
