"""The demo functions finish through the approvals app: an inbox decision, a verification link."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.core import mail
from django.test import Client

from approvals.models import ApprovalRequest, EmailVerification
from approvals.selectors import decisions_for_operations
from durable_console.bootstrap import register_demo_functions
from examples import ledger
from examples.ledger import count
from executions.models import Execution, Operation
from executions.workers import handler_db
from tests.approvals_support import Cast, links_in_outbox, make_cast
from tests.engine_driver import EngineDriver, engine_driver, refreshed, start

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cast() -> Cast:
    return make_cast()


@pytest.fixture
def driver() -> Iterator[EngineDriver]:
    register_demo_functions()
    with engine_driver() as running:
        yield running
    ledger.close()
    handler_db.close()


def waiting(driver: EngineDriver, name: str, payload: dict[str, Any]) -> Execution:
    execution = start(name, payload)
    driver.settle()
    return execution


def finished(driver: EngineDriver, execution: Execution) -> dict[str, Any]:
    driver.run_until(lambda: refreshed(execution).is_terminal)
    done = refreshed(execution)
    assert done.status == "SUCCEEDED", done.error
    return json.loads(done.result)


def test_document_approval_finishes_through_the_inbox(cast: Cast, driver: EngineDriver) -> None:
    payload = {"document_id": "doc-inbox", "author": "ann@example.com"}
    execution = waiting(driver, "document-approval", payload)
    request = ApprovalRequest.objects.get(execution=execution)
    assert request.title == "Publish: Q3 supplier contract"
    assert request.document["document_id"] == "doc-inbox" and "Termination" in request.document["body"]
    approvers = ["alice@example.com", "bob@example.com", "carol@example.com"]
    assert sorted(m.to[0] for m in mail.outbox) == approvers  # the "approvers" group by default
    reviewer = Client()
    reviewer.force_login(cast.carol)
    assert f'id="approval-row-{request.pk}"'.encode() in reviewer.get("/approvals/").content
    reviewer.post(f"/approvals/{request.pk}/decide/", {"outcome": "approve", "comment": "Publish it"})
    result = finished(driver, execution)
    assert (result["status"], result["reviewer"], result["comments"]) == ("approved", "carol", "Publish it")
    assert count("documents", "finalize", "doc-inbox") == 1
    ops = Operation.objects.filter(execution=execution)
    assert ops.get(name="finalize-document").status == "SUCCEEDED"
    callback = ops.get(type="CALLBACK")
    assert decisions_for_operations(ops)[callback.pk].decided_by == "carol"


def test_document_approval_rejected_by_email_link_is_archived(cast: Cast, driver: EngineDriver) -> None:
    execution = waiting(driver, "document-approval", {"document_id": "doc-mail", "reviewers": ["bob"]})
    (link,) = links_in_outbox("bob@example.com")
    Client().post(link, {"outcome": "reject", "comment": "Clause 3 is wrong"})
    result = finished(driver, execution)
    assert (result["status"], result["reason"]) == ("rejected", "Clause 3 is wrong")
    assert result["reviewer"] == "bob"
    assert count("documents", "archive", "doc-mail") == 1


def test_user_onboarding_finishes_when_the_link_is_confirmed(driver: EngineDriver) -> None:
    execution = waiting(driver, "user-onboarding", {"email": "grace@example.com"})
    verification = EmailVerification.objects.get(execution=execution)
    assert verification.email == "grace@example.com"
    (link,) = links_in_outbox("grace@example.com")
    assert Client().get(link).status_code == 200  # a link scanner's GET confirms nothing
    assert not refreshed(execution).is_terminal
    Client().post(link)
    result = finished(driver, execution)
    assert result["status"] == "active" and result["verified"]
    assert result["verification"] == {"confirmed": True, "method": "email-link"}
    assert count("email", "welcome", result["user_id"]) == 1


def test_user_onboarding_reminds_when_nobody_confirms(driver: EngineDriver) -> None:
    payload = {"email": "late@example.com", "verification_timeout_seconds": 90}
    execution = waiting(driver, "user-onboarding", payload)
    (link,) = links_in_outbox("late@example.com")
    result = finished(driver, execution)  # the driver's clock jumps to the callback timeout
    assert result["status"] == "unverified"
    assert count("email", "verify-email-reminder", result["user_id"]) == 1
    assert Client().post(link).status_code == 410
