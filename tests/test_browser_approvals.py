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
from tests.browser_support import SCREENSHOTS, LiveConsole, log_in
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
    seen_on_screen(page, "approvals-inbox")
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


PHONE = {"width": 390, "height": 844}


def review_link_for(server: LiveConsole, title: str) -> str:
    """The e-mail link of the request titled ``title`` (printed by the console e-mail backend)."""
    link = re.escape(server.url) + r"/approvals/review/[^\s\"<]+"
    pattern = re.compile(rf"Subject: Approval needed: {re.escape(title)}\n.*?({link})", re.DOTALL)

    def found() -> str | None:
        match = pattern.search(server.process.log_text())
        return match.group(1) if match else None

    return wait_until(found, timeout=30, message=f"no review e-mail for {title}")


def on_screen(page: Any, selector: str) -> None:
    """Inside the viewport and not covered (by the sticky bars, say): what a person can tap."""
    box = page.locator(selector).bounding_box()
    assert box is not None, selector
    assert box["x"] >= 0 and box["y"] >= 0, (selector, box)
    assert box["x"] + box["width"] <= PHONE["width"] and box["y"] + box["height"] <= PHONE["height"], (
        selector,
        box,
    )
    hit = page.evaluate(
        "([x, y, s]) => document.querySelector(s).contains(document.elementFromPoint(x, y))",
        [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, selector],
    )
    assert hit, f"{selector} is covered"


def seen_on_screen(page: Any, name: str) -> None:
    """A screenshot of the viewport only (a full-page one would show the sticky bars mid-page)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def no_sideways_scroll(page: Any) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"{page.url} scrolls sideways: {widths}"


def test_an_approver_decides_on_a_phone(demos: LiveConsole, chromium: Any) -> None:
    """390 x 844: a tapped request replaces the list with Approve/Reject on screen; approving opens
    the next one; on the e-mail link page, Reject without a reason focuses the error in view."""
    from playwright.sync_api import expect

    approver = get_user_model().objects.create_user("alice", "alice@example.com", PASSWORD)
    approver.groups.add(Group.objects.get(name="approvers"))
    for title in ("Phone one", "Phone two"):
        start("document-approval", {"document_id": title, "title": title, "reviewers": ["alice"]})

    def both() -> list[ApprovalRequest] | None:
        found = list(ApprovalRequest.objects.order_by("expires_at", "id"))
        return found if len(found) == 2 else None

    asked = wait_until(both, timeout=30, message="the approval requests did not arrive")
    first, second = asked  # the inbox's order: least time left first

    context = chromium.new_context(viewport=PHONE, has_touch=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        log_in(page, demos, "alice", PASSWORD)
        page.goto(demos.at("/approvals/"))
        no_sideways_scroll(page)
        page.locator(".approval-row a").first.tap()
        expect(page.locator("#approval-title")).to_have_text(first.title)
        expect(page.locator("#approval-title")).to_be_focused()
        expect(page.locator("#approval-list")).to_be_hidden()  # the request is the view now
        for selector in ("#approval-title", "#decision-approve", "#decision-reject"):
            on_screen(page, selector)
        no_sideways_scroll(page)
        seen_on_screen(page, "approvals-phone")

        page.locator("#decision-approve").tap()
        expect(page.get_by_test_id("decision-recorded")).to_contain_text(f"You approved “{first.title}”")
        expect(page.locator("#approval-title")).to_have_text(second.title)
        expect(page.locator("#approval-title")).to_be_focused()
        expect(page).to_have_url(demos.at(f"/approvals/{second.pk}/"))
        on_screen(page, "#decision-approve")
        page.get_by_test_id("detail-back").tap()  # the list again, without the approved request
        expect(page.locator("#approval-list")).to_be_visible()
        expect(page.locator(".approval-row")).to_have_count(1)
        expect(page.locator(".approval-row.is-current a")).to_be_focused()

        page.goto(review_link_for(demos, second.title))  # no login needed; same phone
        no_sideways_scroll(page)
        on_screen(page, "#decision-reject")
        page.locator("#decision-reject").tap()
        expect(page.locator("#review-comment")).to_be_focused()
        on_screen(page, "[data-testid=error-comment]")
        on_screen(page, "#review-comment")
        no_sideways_scroll(page)
        seen_on_screen(page, "approvals-phone-link-error")
    finally:
        context.close()
