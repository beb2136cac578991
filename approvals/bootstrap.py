"""First-run setup for ``make run``: a reviewer account, so the demos have someone to ask.

The admin starts executions from the console, and nobody may approve their own
execution, so the document-approval demo needs a second person: ``reviewer``,
in the approvers group, with a random password kept in the git-ignored var/.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

REVIEWER_USERNAME = "reviewer"
REVIEWER_EMAIL = "reviewer@example.com"


def ensure_demo_reviewer() -> Iterator[str]:
    password_file = settings.VAR_DIR / "reviewer-password"
    users = get_user_model().objects
    if not users.filter(username=REVIEWER_USERNAME).exists():
        password = secrets.token_urlsafe(12)
        reviewer = users.create_user(REVIEWER_USERNAME, email=REVIEWER_EMAIL, password=password)
        reviewer.groups.add(Group.objects.get_or_create(name="approvers")[0])
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        yield (
            "Created the demo reviewer (approvals inbox at /approvals/). "
            f"Login: {REVIEWER_USERNAME} / {password}"
        )
    elif password_file.exists():  # the password was printed when it was made, and only then
        yield f"Demo reviewer login: {REVIEWER_USERNAME} (password in {password_file})"
