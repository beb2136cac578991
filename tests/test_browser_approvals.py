"""The approvals inbox and e-mail verification in headless Chromium, against a real server."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from approvals.models import ApprovalRequest, EmailVerification
from durable_console.bootstrap import register_demo_functions
from executions.models import Execution, Operation
from tests.browser_support import LiveConsole, log_in, screenshot
from tests.engine_driver import start
from tests.polling import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "approver-test-password"


@pytest.fixture
def demos(live_console: LiveConsole) -> Iterator[LiveConsole]:
    register_demo_functions()
    yield live_console


def finished(execution: Execution, timeout: float = 30) -> Execution:
    return wait_until(
        lambda: (e := Execution.objects.get(pk=execution.pk)).is_terminal and e,
        timeout=timeout,
        message=f"{execution.function.name} did not finish",
    )


def test_an_approver_approves_from_the_inbox(demos: LiveConsole, page: Any) -> None:
    approver = get_user_model().objects.create_user("alice", "alice@example.com", PASSWORD)
    approver.groups.add(Group.objects.get(name="approvers"))
    execution = start("document-approval", {"document_id": "browser-doc", "title": "Supplier contract"})
    wait_until(
        lambda: ApprovalRequest.objects.filter(execution=execution).exists(),
        timeout=30,
        message="no approval request arrived",
    )

    log_in(page, demos, "alice", PASSWORD)
    page.goto(demos.at("/approvals/"))
    page.click(".approval-row:has-text('Supplier contract') a, .approval-row:has-text('Supplier contract')")
    page.wait_for_selector("#decision-comment")
    screenshot(page, "approvals-inbox")
    page.fill("#decision-comment", "Numbers check out")
    page.click("#decision-approve")
    page.wait_for_selector("[data-testid=decision-recorded]")

    done = finished(execution)
    assert done.status == "SUCCEEDED", done.error
    result = json.loads(done.result)
    assert (result["status"], result["reviewer"], result["comments"]) == (
        "approved",
        "alice",
        "Numbers check out",
    )
    assert Operation.objects.get(execution=execution, name="finalize-document").status == "SUCCEEDED"

    # The execution's timeline shows who decided (alice is an approver, so an admin looks).
    admin = get_user_model().objects.create_superuser("boss", "boss@example.com", PASSWORD)
    page.context.clear_cookies()
    log_in(page, demos, admin.username, PASSWORD)
    page.goto(demos.at(f"/executions/{execution.pk}/"))
    decided = page.inner_text("[data-testid=callback-decision]")
    assert "approved by alice (inbox)" in decided


def verification_link(server: LiveConsole, email: str) -> str:
    """The link from the verification e-mail the server printed (console e-mail backend)."""

    def found() -> str | None:
        text = server.process.log_text()
        if email not in text:
            return None
        links = re.findall(re.escape(server.url) + r"/approvals/verify/[^\s\"<]+", text)
        return links[-1] if links else None

    return wait_until(found, timeout=30, message="no verification e-mail was sent")


def test_onboarding_completes_after_the_verification_link_is_followed(demos: LiveConsole, page: Any) -> None:
    execution = start("user-onboarding", {"email": "grace@example.com", "name": "Grace"})
    link = verification_link(demos, "grace@example.com")
    page.goto(link)  # an e-mail link: no login
    page.wait_for_selector("#confirm-email")
    assert Execution.objects.get(pk=execution.pk).status == "RUNNING"  # opening the link changes nothing
    page.click("#confirm-email")
    page.wait_for_selector("[data-testid=verified]")

    done = finished(execution)
    assert done.status == "SUCCEEDED", done.error
    assert json.loads(done.result)["status"] == "active"
    page.goto(link)  # single use
    page.wait_for_selector("[data-testid=link-problem]")


def test_onboarding_sends_a_reminder_when_nobody_clicks(demos: LiveConsole) -> None:
    execution = start("user-onboarding", {"email": "late@example.com", "verification_timeout_seconds": 2})
    done = finished(execution, timeout=30)
    assert done.status == "SUCCEEDED", done.error
    assert json.loads(done.result)["status"] == "unverified"
    assert Operation.objects.get(execution=execution, name="send-reminder").status == "SUCCEEDED"
    assert EmailVerification.objects.filter(email="late@example.com").exists()
