"""Approvals services: requests from handlers, decisions, policy, concurrency, expiry.

Executions run on the production engine (tests/engine_driver.py), so a decision
really completes the callback and the handler really resumes with it.
"""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.core import mail
from django.db import connections

from approvals import handler_api, selectors, services
from approvals.errors import (
    AlreadyDecided,
    AlreadyVoted,
    CallbackNotFound,
    DeliveryError,
    InvalidRequest,
    NotAReviewer,
    RequestExpired,
    SelfApprovalRefused,
    UnknownReviewers,
)
from approvals.models import ApprovalRequest, Decision, RequestStatus, ReviewerNotification
from executions import services as engine
from executions.models import AuditEntry, HistoryEvent
from tests.approvals_support import (
    APPROVAL_FUNCTION,
    BARE_CALLBACK,
    BARE_FUNCTION,
    FLAKY_FUNCTION,
    Cast,
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


def decide(flow: Any, user: Any, outcome: str = "approve", comment: str = "") -> Decision:
    return services.approval_decide(
        request_id=flow.request.pk, reviewer=user, outcome=outcome, comment=comment
    )


# --- requests from handlers ------------------------------------------------------------------


def test_a_submitter_puts_one_request_in_the_inbox_and_mails_each_reviewer(
    cast: Cast, driver: EngineDriver
) -> None:
    flow = start_flow(driver, APPROVAL_FUNCTION, {"reviewers": ["approvers", "alice"]})
    request = flow.request
    assert request.status == RequestStatus.PENDING and request.title == "Publish the Q3 report"
    assert sorted(r.name for r in request.reviewers.all()) == ["alice", "approvers"]
    # alice is named twice (directly and through the group): one e-mail each, per person.
    assert sorted(m.to[0] for m in mail.outbox) == [
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
    ]
    assert all(m.subject == "Approval needed: Publish the Q3 report" for m in mail.outbox)
    op = started_callback(flow.execution, "approval create callback id")
    assert request.operation_id == op.pk
    assert request.callback_id_hash == op.callback_id_hash
    assert callback_id(op) not in json.dumps(list(ApprovalRequest.objects.values()), default=str)


def test_requesting_again_for_the_same_callback_changes_nothing(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, APPROVAL_FUNCTION, {})
    op = started_callback(flow.execution, "approval create callback id")
    sent = len(mail.outbox)
    again = handler_api.request_approval(
        callback_id(op), title="Other", summary="", document=None, reviewers=["bob"], expires_in=60
    )
    assert again["request_id"] == flow.request.pk
    assert flow.request.title == "Publish the Q3 report"
    assert len(mail.outbox) == sent


def test_a_retried_submitter_asks_once(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, FLAKY_FUNCTION, {"key": "flaky-1", "reviewers": ["alice"]})
    driver.run_until(lambda: started_callback(flow.execution, "approval create callback id") is not None)
    driver.advance_to_next_timer()  # the submitter's retry delay
    flow.settle()
    assert ApprovalRequest.objects.filter(execution=flow.execution).count() == 1
    assert [m.to for m in mail.outbox] == [["alice@example.com"]]
    decide(flow, cast.alice, comment="fine")
    assert result_of(flow.finish())["approved"] is True


def test_handler_api_refuses_bad_arguments(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, BARE_FUNCTION, {})
    cid = callback_id(started_callback(flow.execution, BARE_CALLBACK))
    valid = {"title": "t", "summary": "", "document": None, "reviewers": ["alice"], "expires_in": 60}
    with pytest.raises(CallbackNotFound):
        handler_api.request_approval("bm90LWEtY2FsbGJhY2s=", **valid)
    with pytest.raises(UnknownReviewers, match="'ghost'"):
        handler_api.request_approval(cid, **{**valid, "reviewers": ["alice", "ghost"]})
    bad_values = [
        {"expires_in": 0},
        {"expires_in": "soon"},
        {"required": 0},
        {"title": ""},
        {"reviewers": []},
        {"document": {"not": object()}},
    ]
    for bad in bad_values:
        with pytest.raises(InvalidRequest):
            handler_api.request_approval(cid, **{**valid, **bad})
    assert not ApprovalRequest.objects.exists() and not mail.outbox
    by_email = {"reviewers": "alice@example.com", "expires_in": datetime.timedelta(minutes=5)}
    created = handler_api.request_approval(cid, **{**valid, **by_email})
    request = ApprovalRequest.objects.get(pk=created["request_id"])
    assert request.reviewers.get().user == cast.alice
    assert request.expires_at - request.created_at == datetime.timedelta(minutes=5)


def test_a_callback_answered_before_its_submitter_ran_needs_nobody(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, BARE_FUNCTION, {})
    cid = callback_id(started_callback(flow.execution, BARE_CALLBACK))
    engine.callback_succeed(cid, json.dumps("fast external answer"))
    arguments = {"title": "t", "summary": "", "document": None, "reviewers": ["alice"], "expires_in": 60}
    assert handler_api.request_approval(cid, **arguments)["closed"] is True  # not an error
    assert handler_api.send_verification_email(cid, email="x@example.com", expires_in=60)["closed"] is True
    assert not ApprovalRequest.objects.exists() and not mail.outbox
    assert result_of(flow.finish()) == "fast external answer"


def test_expiry_is_capped_by_the_callback_timeout(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, APPROVAL_FUNCTION, {"timeout": 120, "expires_in": 3 * 86400})
    op = started_callback(flow.execution, "approval create callback id")
    assert flow.request.expires_at == op.callback_timeout_at


def test_undeliverable_mail_is_retried_without_a_second_request(
    cast: Cast, driver: EngineDriver, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    flow = start_flow(driver, BARE_FUNCTION, {})
    cid = callback_id(started_callback(flow.execution, BARE_CALLBACK))
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("connection refused")

    monkeypatch.setattr("smtplib.SMTP.__init__", refuse)  # the only mock: the SMTP server
    arguments = {"title": "t", "summary": "", "document": None, "reviewers": ["alice"], "expires_in": 60}
    with pytest.raises(DeliveryError, match=r"alice@example\.com"):
        handler_api.request_approval(cid, **arguments)
    assert ReviewerNotification.objects.get().sent_at is None
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    handler_api.request_approval(cid, **arguments)  # the submitter's retry
    assert ReviewerNotification.objects.get().sent_at is not None
    assert ApprovalRequest.objects.count() == 1 and len(mail.outbox) == 1


# --- decisions ----------------------------------------------------------------------------------


def test_approval_completes_the_callback_with_the_decision(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, APPROVAL_FUNCTION, {})
    decision = decide(flow, cast.bob, comment="Looks right")
    assert (decision.reviewer_name, decision.channel) == ("bob", "inbox")
    assert result_of(flow.finish()) == {"approved": True, "comments": "Looks right", "reviewer": "bob"}
    request = flow.request
    assert (request.status, request.decided_by_name) == (RequestStatus.APPROVED, "bob")
    entry = AuditEntry.objects.get(action="approval.approve")
    assert (entry.actor_name, entry.channel, entry.target) == ("bob", "console", flow.execution.arn)
    assert entry.details["comment"] == "Looks right" and entry.details["channel"] == "inbox"


def test_rejection_completes_the_callback_with_the_reason(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, APPROVAL_FUNCTION, {})
    decide(flow, cast.alice, "reject", "Figures missing")
    assert result_of(flow.finish()) == {"approved": False, "reason": "Figures missing", "reviewer": "alice"}
    assert flow.request.status == RequestStatus.REJECTED


def test_n_of_m_needs_enough_approvals(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, APPROVAL_FUNCTION, {"required": 2})
    decide(flow, cast.alice, comment="ok by me")
    assert flow.request.status == RequestStatus.PENDING
    assert started_callback(flow.execution, "approval create callback id") is not None  # still waiting
    with pytest.raises(AlreadyVoted):
        decide(flow, cast.alice)
    decide(flow, cast.carol, comment="me too")
    assert result_of(flow.finish()) == {
        "approved": True,
        "comments": "me too",
        "reviewer": "carol",
        "reviewers": ["alice", "carol"],
    }


def test_one_rejection_rejects_an_n_of_m_request(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, APPROVAL_FUNCTION, {"required": 2})
    decide(flow, cast.alice)
    decide(flow, cast.bob, "reject", "No")
    assert result_of(flow.finish())["approved"] is False
    with pytest.raises(AlreadyDecided, match="already rejected by bob"):
        decide(flow, cast.carol)


def test_the_person_who_started_the_execution_cannot_approve_it(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, APPROVAL_FUNCTION, {}, started_by=cast.alice)
    assert "alice@example.com" not in [m.to[0] for m in mail.outbox]  # not even told about it
    with pytest.raises(SelfApprovalRefused):
        decide(flow, cast.alice)
    assert not Decision.objects.exists()
    decide(flow, cast.bob)
    assert result_of(flow.finish())["reviewer"] == "bob"


def test_self_approval_can_be_allowed_by_the_handler(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, APPROVAL_FUNCTION, {"allow_self_approval": True}, started_by=cast.alice)
    decide(flow, cast.alice)
    assert result_of(flow.finish())["reviewer"] == "alice"


def test_only_reviewers_and_operators_may_decide(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, APPROVAL_FUNCTION, {"reviewers": ["legal"]})
    for stranger in (cast.alice, cast.viewer, cast.outsider):
        with pytest.raises(NotAReviewer):
            decide(flow, stranger)
    decide(flow, cast.operator, comment="on behalf of legal")
    assert result_of(flow.finish())["reviewer"] == "oscar"


def race(request_id: int, contenders: list[tuple[Any, str]]) -> dict[str, Any]:
    """Everyone decides at the same moment, each on a thread (and connection) of their own."""
    barrier = threading.Barrier(len(contenders))
    outcomes: dict[str, Any] = {}

    def decide_as(user: Any, outcome: str) -> None:
        try:
            barrier.wait()
            outcomes[user.get_username()] = services.approval_decide(
                request_id=request_id, reviewer=user, outcome=outcome, comment="race"
            )
        except Exception as error:
            outcomes[user.get_username()] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=decide_as, args=contender) for contender in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_two_reviewers_at_once_give_exactly_one_outcome(
    cast: Cast, driver: EngineDriver, requires_postgresql: None
) -> None:
    for round_ in range(3):
        flow = start_flow(driver, APPROVAL_FUNCTION, {"title": f"Round {round_}"})
        outcomes = race(flow.request.pk, [(cast.alice, "approve"), (cast.bob, "reject")])
        winners = [name for name, outcome in outcomes.items() if isinstance(outcome, Decision)]
        losers = [outcome for outcome in outcomes.values() if isinstance(outcome, AlreadyDecided)]
        assert len(winners) == 1 and len(losers) == 1, outcomes
        assert losers[0].by == winners[0] and winners[0] in losers[0].message
        completions = HistoryEvent.objects.filter(execution=flow.execution, event_type="CallbackSucceeded")
        assert completions.count() == 1
        assert Decision.objects.filter(request=flow.request).count() == 1
        assert result_of(flow.finish())["reviewer"] == winners[0]


# --- expiry -------------------------------------------------------------------------------------


def test_a_request_whose_callback_timed_out_is_expired(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, APPROVAL_FUNCTION, {"timeout": 60})
    driver.clock.advance(61)
    assert result_of(flow.finish()) == {"timed_out": True}  # the engine fired the timeout
    request = flow.request
    assert request.state(driver.clock.now()) == RequestStatus.EXPIRED
    scope = selectors.inbox_scope(cast.alice)
    assert list(selectors.tab_requests(scope, "expired", driver.clock.now())) == [request]
    assert not selectors.tab_requests(scope, "assigned", driver.clock.now()).exists()
    with pytest.raises(RequestExpired, match="timed out"):
        decide(flow, cast.alice)
    assert flow.request.status == RequestStatus.EXPIRED and not Decision.objects.exists()


def test_a_request_past_its_deadline_is_expired_before_the_engine_notices(
    cast: Cast, driver: EngineDriver
) -> None:
    flow = start_flow(driver, APPROVAL_FUNCTION, {"timeout": 60})
    driver.clock.advance(61)  # no scheduler tick yet: the callback is still STARTED in the table
    with pytest.raises(RequestExpired):
        decide(flow, cast.alice)
    assert result_of(flow.finish()) == {"timed_out": True}
    assert not HistoryEvent.objects.filter(execution=flow.execution, event_type="CallbackSucceeded").exists()


def test_a_request_can_expire_before_its_callback(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, APPROVAL_FUNCTION, {"timeout": 3600, "expires_in": 30})
    driver.clock.advance(31)
    with pytest.raises(RequestExpired, match="request expired"):
        decide(flow, cast.alice)
    assert started_callback(flow.execution, "approval create callback id") is not None


def test_a_callback_completed_by_hand_closes_the_request(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, APPROVAL_FUNCTION, {})
    op = started_callback(flow.execution, "approval create callback id")
    engine.callback_succeed(callback_id(op), json.dumps({"approved": True, "reviewer": "api"}))
    with pytest.raises(RequestExpired, match="outside the inbox"):
        decide(flow, cast.alice)
    assert result_of(flow.finish())["reviewer"] == "api"


# --- the console timeline's view -------------------------------------------------------------------


def test_decisions_for_operations_summarise_who_decided(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, APPROVAL_FUNCTION, {"required": 2})
    op = started_callback(flow.execution, "approval create callback id")
    pending = selectors.decisions_for_operations([op])[op.pk]
    assert (pending.status, pending.decided_by, pending.approvals, pending.required) == ("pending", "", 0, 2)
    decide(flow, cast.alice, comment="yes")
    decide(flow, cast.bob, comment="also yes")
    flow.finish()
    summary = selectors.decisions_for_operations([op.pk])[op.pk]
    assert (summary.kind, summary.status, summary.decided_by, summary.channel) == (
        "approval",
        "approved",
        "bob",
        "inbox",
    )
    assert summary.comment == "also yes" and summary.url == f"/approvals/{flow.request.pk}/"
    assert [(e.reviewer, e.outcome, e.channel_label) for e in summary.entries] == [
        ("alice", "approve", "Inbox"),
        ("bob", "approve", "Inbox"),
    ]
    assert selectors.decisions_for_operations([]) == {}
