"""Signed e-mail links: verification and per-reviewer decision links.

Each link is followed from the e-mail the locmem backend caught. GET only
shows a page (link scanners fetch it); POST acts, once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django.core import mail
from django.test import Client

from approvals.models import Decision, RequestStatus, UsedLinkToken, VerificationStatus
from executions import services as engine
from executions.models import AuditEntry, HistoryEvent
from tests.approvals_support import (
    APPROVAL_FUNCTION,
    VERIFY_FUNCTION,
    Cast,
    Flow,
    links_in_outbox,
    make_cast,
    result_of,
    running_driver,
    start_flow,
)
from tests.engine_driver import EngineDriver, callback_id, started_callback

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cast() -> Cast:
    return make_cast()


@pytest.fixture
def driver() -> Iterator[EngineDriver]:
    yield from running_driver()


def verify_flow(driver: EngineDriver, **payload: object) -> tuple[Flow, str]:
    flow = start_flow(driver, VERIFY_FUNCTION, {"email": "grace@example.com", **payload})
    (link,) = links_in_outbox("grace@example.com")
    return flow, link


def tampered(link: str) -> str:
    token = link.rstrip("/").rsplit("/", 1)[1]
    payload, signature = token.split(":", 1)
    return link.replace(token, payload[:-1] + ("A" if payload[-1] != "A" else "B") + ":" + signature)


# --- e-mail verification ---------------------------------------------------------------------------


def test_the_verification_email_carries_a_link_that_confirms_on_post(driver: EngineDriver) -> None:
    flow, link = verify_flow(driver)
    (message,) = mail.outbox
    assert message.subject == "Confirm your e-mail address" and message.to == ["grace@example.com"]
    assert link.startswith("/approvals/verify/")
    op = started_callback(flow.execution, "verify create callback id")
    assert callback_id(op) not in message.body  # the link names the verification, not the callback
    page = Client().get(link)
    assert page.status_code == 200 and b'id="confirm-email"' in page.content
    assert flow.verification.status == VerificationStatus.PENDING  # looking changes nothing
    done = Client().post(link)
    assert done.status_code == 200 and b'data-testid="verified"' in done.content
    assert result_of(flow.finish()) == {"verified": True}
    assert flow.verification.status == VerificationStatus.CONFIRMED
    entry = AuditEntry.objects.get(action="verification.confirm")
    assert (entry.channel, entry.actor_name) == ("email", "grace@example.com")


def test_a_reused_verification_link_changes_nothing(driver: EngineDriver) -> None:
    flow, link = verify_flow(driver)
    Client().post(link)
    flow.finish()
    again = Client().post(link)
    assert again.status_code == 410 and b"already been used" in again.content
    assert Client().get(link).status_code == 410
    assert HistoryEvent.objects.filter(execution=flow.execution, event_type="CallbackSucceeded").count() == 1
    assert UsedLinkToken.objects.count() == 1


def test_a_tampered_verification_link_changes_nothing(driver: EngineDriver) -> None:
    flow, link = verify_flow(driver)
    for bad in (tampered(link), "/approvals/verify/not-a-token/", link.replace("/verify/", "/review/")):
        for method in (Client().get, Client().post):
            response = method(bad)
            assert response.status_code == 400, bad
            assert b"This link is not valid" in response.content
    assert flow.verification.status == VerificationStatus.PENDING
    assert started_callback(flow.execution, "verify create callback id") is not None


def test_an_expired_verification_link_changes_nothing(driver: EngineDriver) -> None:
    flow, link = verify_flow(driver, timeout=60, expires_in=3600)
    op = started_callback(flow.execution, "verify create callback id")
    assert flow.verification.expires_at == op.callback_timeout_at
    driver.clock.advance(61)
    assert result_of(flow.finish()) == {"verified": False}  # the timeout path
    for method in (Client().get, Client().post):
        response = method(link)
        assert response.status_code == 410 and b"This link has expired" in response.content
    assert not UsedLinkToken.objects.exists()


def test_a_link_for_a_callback_answered_elsewhere_changes_nothing(driver: EngineDriver) -> None:
    flow, link = verify_flow(driver)
    op = started_callback(flow.execution, "verify create callback id")
    engine.callback_succeed(callback_id(op), json.dumps("by hand"))
    response = Client().post(link)
    assert response.status_code == 410 and b"completed outside the inbox" in response.content
    assert result_of(flow.finish()) == {"verified": "by hand"}
    assert flow.verification.status == VerificationStatus.EXPIRED


# --- reviewer links ----------------------------------------------------------------------------------


def review_link(to: str) -> str:
    (link,) = links_in_outbox(to)
    assert link.startswith("/approvals/review/")
    return link


def test_a_reviewer_decides_from_the_email_without_logging_in(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, APPROVAL_FUNCTION, {"reviewers": ["alice", "bob"]})
    link = review_link("bob@example.com")
    page = Client().get(link)
    assert page.status_code == 200
    body = page.content.decode()
    assert 'id="review-form"' in body and 'data-testid="link-reviewer">bob<' in body
    assert "Revenue grew." in body and Decision.objects.count() == 0
    done = Client().post(link, {"outcome": "approve", "comment": "From my phone"})
    assert done.status_code == 200 and b'data-testid="decision-recorded"' in done.content
    assert result_of(flow.finish()) == {"approved": True, "comments": "From my phone", "reviewer": "bob"}
    decision = Decision.objects.get()
    assert (decision.reviewer, decision.channel) == (cast.bob, "email")
    entry = AuditEntry.objects.get(action="approval.approve")
    assert (entry.channel, entry.actor_name, entry.details["comment"]) == ("email", "bob", "From my phone")


def test_a_reused_review_link_changes_nothing(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, APPROVAL_FUNCTION, {"reviewers": ["alice", "bob"], "required": 2})
    link = review_link("alice@example.com")
    assert Client().post(link, {"outcome": "approve"}).status_code == 200
    again = Client().post(link, {"outcome": "reject", "comment": "changed my mind"})
    assert again.status_code == 410 and b"already been used" in again.content
    assert Decision.objects.count() == 1 and flow.request.status == RequestStatus.PENDING


def test_a_tampered_review_link_changes_nothing(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, APPROVAL_FUNCTION, {"reviewers": ["alice"]})
    link = review_link("alice@example.com")
    verify_shaped = link.replace("/review/", "/verify/")
    for bad in (tampered(link), "/approvals/review/x:y:z/", verify_shaped):
        response = Client().post(bad, {"outcome": "approve"})
        assert response.status_code == 400 and b"not valid" in response.content, bad
    assert not Decision.objects.exists() and flow.request.status == RequestStatus.PENDING


def test_an_expired_review_link_changes_nothing(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, APPROVAL_FUNCTION, {"reviewers": ["alice"], "timeout": 60})
    link = review_link("alice@example.com")
    driver.clock.advance(61)
    flow.finish()
    for response in (Client().get(link), Client().post(link, {"outcome": "approve"})):
        assert response.status_code == 410 and b"This link has expired" in response.content
    assert not Decision.objects.exists()


def test_a_review_link_after_someone_else_decided(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, APPROVAL_FUNCTION, {"reviewers": ["alice", "bob"]})
    link = review_link("alice@example.com")
    bob = Client()
    bob.force_login(cast.bob)
    bob.post(f"/approvals/{flow.request.pk}/decide/", {"outcome": "reject", "comment": "no"})
    page = Client().get(link)
    assert page.status_code == 409 and b"already rejected by bob" in page.content
    late = Client().post(link, {"outcome": "approve"})
    assert late.status_code == 409 and b"already rejected by bob" in late.content
    assert Decision.objects.count() == 1 and not UsedLinkToken.objects.exists()


def test_a_review_link_form_error_keeps_the_link_usable(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, APPROVAL_FUNCTION, {"reviewers": ["alice"]})
    link = review_link("alice@example.com")
    assert b'data-testid="required-comment">(required to reject)<' in Client().get(link).content
    missing_reason = Client().post(link, {"outcome": "reject"})
    assert missing_reason.status_code == 400 and b'data-testid="error-comment"' in missing_reason.content
    # Focused (autofocus without JS; approvals.js also scrolls it clear of the sticky buttons).
    body = missing_reason.content.decode()
    assert (
        'aria-invalid="true" autofocus' in body
        and 'aria-describedby="review-comment-rule review-comment-errors"' in body
    )
    assert Client().post(link, {"outcome": "reject", "comment": "Late"}).status_code == 200
    assert result_of(flow.finish())["reason"] == "Late"
