"""The approvals inbox: who sees what, deciding from the page, polling, tabs."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client

from approvals.models import Decision, RequestStatus
from executions import operator
from executions.audit import Actor
from executions.models import AuditEntry
from tests.approvals_support import (
    APPROVAL_FUNCTION,
    Cast,
    Flow,
    make_cast,
    result_of,
    running_driver,
    start_flow,
)
from tests.engine_driver import EngineDriver, callback_id

pytestmark = pytest.mark.django_db(transaction=True)

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def cast() -> Cast:
    return make_cast()


@pytest.fixture
def driver() -> Iterator[EngineDriver]:
    yield from running_driver()


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def row_ids(response: Any) -> list[int]:
    return [int(row.split('"')[0]) for row in response.content.decode().split('id="approval-row-')[1:]]


@pytest.fixture
def flows(cast: Cast, driver: EngineDriver) -> dict[str, Flow]:
    """One request for the approvers group, one for legal (carol) only, one for alice by name."""
    return {
        "group": start_flow(driver, APPROVAL_FUNCTION, {"title": "For approvers"}),
        "legal": start_flow(driver, APPROVAL_FUNCTION, {"title": "For legal", "reviewers": ["legal"]}),
        "alice": start_flow(driver, APPROVAL_FUNCTION, {"title": "For alice", "reviewers": ["alice"]}),
    }


# --- who sees what --------------------------------------------------------------------------------


def test_approvers_see_only_requests_assigned_to_them(cast: Cast, flows: dict[str, Flow]) -> None:
    pks = {name: flow.request.pk for name, flow in flows.items()}
    seen = {
        "alice": {pks["group"], pks["alice"]},
        "bob": {pks["group"]},
        "carol": {pks["group"], pks["legal"]},
    }
    for name, expected in seen.items():
        client = client_for(getattr(cast, name))
        response = client.get("/approvals/")
        assert response.status_code == 200
        assert set(row_ids(response)) == expected, name
        for pk in set(pks.values()) - expected:
            assert client.get(f"/approvals/{pk}/").status_code == 404
            assert client.post(f"/approvals/{pk}/decide/", {"outcome": "approve"}).status_code == 404


def test_operators_and_admins_see_every_request(cast: Cast, flows: dict[str, Flow]) -> None:
    for user in (cast.operator, cast.admin):
        response = client_for(user).get("/approvals/")
        assert set(row_ids(response)) == {flow.request.pk for flow in flows.values()}
        assert b"Open" in response.content  # their first tab is every open request


def test_nobody_else_sees_any(cast: Cast, flows: dict[str, Flow]) -> None:
    pk = flows["group"].request.pk
    for user in (cast.viewer, cast.outsider):
        client = client_for(user)
        assert client.get("/approvals/").status_code == 403
        assert client.get(f"/approvals/{pk}/").status_code == 403
        assert client.post(f"/approvals/{pk}/decide/", {"outcome": "approve"}).status_code == 403
    anonymous = Client().get("/approvals/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    assert not Decision.objects.exists()


def test_the_execution_link_is_shown_only_to_those_who_may_view_executions(
    cast: Cast, flows: dict[str, Flow]
) -> None:
    flow = flows["group"]
    url = f"/approvals/{flow.request.pk}/"
    assert f"/executions/{flow.execution.pk}/".encode() in client_for(cast.operator).get(url).content
    page = client_for(cast.alice).get(url)
    assert b'id="approval-execution-link"' not in page.content
    assert flow.execution.name.encode() in page.content


def test_the_detail_shows_summary_document_and_time_left(cast: Cast, flows: dict[str, Flow]) -> None:
    page = client_for(cast.alice).get(f"/approvals/{flows['group'].request.pk}/").content.decode()
    assert 'data-testid="approval-detail"' in page and "Please review the figures." in page
    assert "Revenue grew.\nCosts fell." in page  # the document's prose keeps its lines
    assert re.search(r'data-testid="approval-time-left">(59 min( \d+ s)?|1 h)<', page)  # the 1 h timeout
    partial = client_for(cast.alice).get(f"/approvals/{flows['group'].request.pk}/", **HTMX)
    assert partial.content.decode().lstrip().startswith('<article class="panel approval"')


# --- deciding ---------------------------------------------------------------------------------------


def test_approving_from_the_inbox_completes_the_execution(cast: Cast, flows: dict[str, Flow]) -> None:
    flow = flows["group"]
    response = client_for(cast.bob).post(
        f"/approvals/{flow.request.pk}/decide/", {"outcome": "approve", "comment": "Numbers check out"}
    )
    assert response.status_code == 302 and response["Location"] == f"/approvals/{flow.request.pk}/"
    assert result_of(flow.finish()) == {"approved": True, "comments": "Numbers check out", "reviewer": "bob"}
    entry = AuditEntry.objects.get(action="approval.approve")
    assert (entry.actor_name, entry.channel, entry.details["channel"]) == ("bob", "console", "inbox")
    decided = client_for(cast.bob).get("/approvals/?tab=decided")
    assert row_ids(decided) == [flow.request.pk]
    assert flow.request.pk not in row_ids(client_for(cast.bob).get("/approvals/"))


def test_a_decision_opens_the_next_waiting_request(cast: Cast, flows: dict[str, Flow]) -> None:
    group, own = flows["group"].request.pk, flows["alice"].request.pk  # alice's list: group, then own
    client = client_for(cast.alice)
    response = client.post(
        f"/approvals/{group}/decide/", {"outcome": "reject", "comment": "Wrong numbers"}, **HTMX
    )
    assert response.status_code == 200 and "approvals-changed" in response["HX-Trigger-After-Settle"]
    assert response["HX-Replace-Url"] == f"/approvals/{own}/"
    body = response.content.decode()
    assert f'data-request="{own}"' in body and 'id="decision-form"' in body
    assert "You rejected “For approvers”. Here is the next request." in body
    assert result_of(flows["group"].finish())["reason"] == "Wrong numbers"
    # The last one: nothing follows, so the decided request stays, saying so (here without htmx).
    last = client.post(f"/approvals/{own}/decide/", {"outcome": "approve"}, follow=True)
    assert last.redirect_chain == [(f"/approvals/{own}/", 302)]
    assert "You approved “For alice”. Nothing else is waiting for you." in last.content.decode()
    assert b'data-testid="approval-outcome"' in last.content


def test_bad_input_shows_form_errors_and_changes_nothing(cast: Cast, flows: dict[str, Flow]) -> None:
    flow = flows["group"]
    client = client_for(cast.alice)
    url = f"/approvals/{flow.request.pk}/decide/"
    no_reason = client.post(url, {"outcome": "reject", "comment": "  "})
    assert no_reason.status_code == 400
    assert b'data-testid="error-comment"' in no_reason.content
    nonsense = client.post(url, {"outcome": "maybe"})
    assert nonsense.status_code == 400 and b'data-testid="error-outcome"' in nonsense.content
    too_long = client.post(url, {"outcome": "approve", "comment": "x" * 2001})
    assert too_long.status_code == 400
    htmx = client.post(url, {"outcome": "reject"}, **HTMX)
    assert htmx.status_code == 200 and b'data-testid="error-comment"' in htmx.content
    # The box says it is wrong and why; the error comes before it, so showing the box shows both.
    body = htmx.content.decode()
    assert (
        'aria-invalid="true"' in body
        and 'aria-describedby="decision-comment-rule decision-comment-errors"' in body
    )
    assert body.index('id="decision-comment-errors"') < body.index('<textarea name="comment"')
    assert client.get(url).status_code == 405
    assert not Decision.objects.exists()
    assert flow.request.status == RequestStatus.PENDING


def test_decisions_need_the_csrf_token(cast: Cast, flows: dict[str, Flow]) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(cast.alice)
    response = client.post(f"/approvals/{flows['group'].request.pk}/decide/", {"outcome": "approve"})
    assert response.status_code == 403 and not Decision.objects.exists()


def test_a_second_reviewer_is_told_who_decided(cast: Cast, flows: dict[str, Flow]) -> None:
    flow = flows["group"]
    url = f"/approvals/{flow.request.pk}/decide/"
    client_for(cast.alice).post(url, {"outcome": "approve"})
    late = client_for(cast.bob).post(url, {"outcome": "reject", "comment": "No"})
    assert late.status_code == 409
    assert b"This request was already approved by alice." in late.content
    assert Decision.objects.count() == 1


def test_the_starter_cannot_approve_from_the_inbox(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, APPROVAL_FUNCTION, {}, started_by=cast.alice)
    client = client_for(cast.alice)
    page = client.get(f"/approvals/{flow.request.pk}/")
    assert b'data-testid="cannot-decide"' in page.content and b'id="decision-form"' not in page.content
    refused = client.post(f"/approvals/{flow.request.pk}/decide/", {"outcome": "approve"})
    assert refused.status_code == 409 and b"someone else has to decide" in refused.content
    assert not Decision.objects.exists()


def test_expired_requests_move_to_the_expired_tab(cast: Cast, driver: EngineDriver) -> None:
    flow = start_flow(driver, APPROVAL_FUNCTION, {"timeout": 60})
    driver.clock.advance(61)
    flow.finish()
    client = client_for(cast.alice)
    assert row_ids(client.get("/approvals/")) == []
    assert row_ids(client.get("/approvals/?tab=expired")) == [flow.request.pk]
    page = client.get(f"/approvals/{flow.request.pk}/").content.decode()
    assert 'data-testid="approval-expired"' in page and "The callback timed out." in page
    refused = client.post(f"/approvals/{flow.request.pk}/decide/", {"outcome": "approve"})
    assert refused.status_code == 409 and not Decision.objects.exists()


# --- live updates ------------------------------------------------------------------------------------


def test_the_polled_list_answers_204_until_something_changes(cast: Cast, flows: dict[str, Flow]) -> None:
    client = client_for(cast.bob)
    first = client.get("/approvals/list/", {"tab": "assigned"}, **HTMX)
    assert first.status_code == 200
    version = first.content.decode().split('data-version="')[1].split('"')[0]
    same = client.get("/approvals/list/", {"tab": "assigned", "v": version}, **HTMX)
    assert same.status_code == 204
    flow = flows["group"]
    client_for(cast.alice).post(f"/approvals/{flow.request.pk}/decide/", {"outcome": "approve"})
    poll = {"tab": "assigned", "v": version, "open": flow.request.pk}
    changed = client.get("/approvals/list/", poll, **HTMX)
    assert changed.status_code == 200
    body = changed.content.decode()
    assert flow.request.pk not in row_ids(changed)
    assert 'id="approval-tabs"' in body and 'hx-swap-oob="true"' in body  # the counts
    assert 'id="approval-status"' in body and "Approved by <strong>alice</strong>" in body  # the open request


# --- search and order -------------------------------------------------------------------------------


def test_search_and_order_are_in_the_query(
    cast: Cast, driver: EngineDriver, django_assert_num_queries: Callable[..., Any]
) -> None:
    """Sorted and searched by the database, in a fixed number of queries; never beyond what the
    user may see; kept by the row links and the address; the next request comes from that list."""

    def ask(title: str, expires_in: int, **payload: Any) -> int:
        flow = start_flow(driver, APPROVAL_FUNCTION, {"title": title, "expires_in": expires_in, **payload})
        driver.clock.advance(1)  # created one second apart
        return flow.request.pk

    report = ask("Quarterly report", 3000)
    laptop = ask("Laptop order", 1000, summary="For the new hire")
    budget = ask("Quarterly budget", 2000)
    legal = ask("Quarterly contract", 500, reviewers=["legal"])  # carol's, not bob's
    bob = client_for(cast.bob)
    orders = {
        "": [laptop, budget, report],
        "oldest": [report, laptop, budget],
        "newest": [budget, laptop, report],
    }
    for sort, expected in orders.items():
        assert row_ids(bob.get("/approvals/", {"sort": sort})) == expected, sort
    searched = bob.get("/approvals/", {"q": "  quarterly ", "sort": "oldest"})
    assert row_ids(searched) == [report, budget]  # every word, any case; carol's stays hidden
    assert b'data-testid="count-assigned">2<' in searched.content
    assert f'href="/approvals/{report}/?q=quarterly&amp;sort=oldest"'.encode() in searched.content
    assert row_ids(bob.get("/approvals/", {"q": "quarterly report"})) == [report]
    assert row_ids(bob.get("/approvals/", {"q": "new hire"})) == [laptop]  # the summary
    assert row_ids(bob.get("/approvals/", {"q": "contract"})) == []
    assert row_ids(bob.get("/approvals/", {"q": "approval-TEST", "sort": "bogus"})) == [
        laptop,
        budget,
        report,
    ]
    assert row_ids(client_for(cast.carol).get("/approvals/", {"q": "contract"})) == [legal]

    filtered = bob.get(
        "/approvals/list/", {"q": "quarterly", "sort": "oldest"}, HTTP_HX_TRIGGER="approval-filters", **HTMX
    )
    assert filtered["HX-Replace-Url"] == "/approvals/?q=quarterly&sort=oldest" and row_ids(filtered) == [
        report,
        budget,
    ]

    # The next request after the report is the budget: the next in the searched list, not the laptop.
    decided = bob.post(
        f"/approvals/{report}/decide/", {"outcome": "approve", "q": "quarterly", "sort": "oldest"}, **HTMX
    )
    assert f'data-request="{budget}"'.encode() in decided.content
    assert decided["HX-Replace-Url"] == f"/approvals/{budget}/?q=quarterly&sort=oldest"

    # The same number of queries whatever the number of rows: auth (4), three tab counts, the rows,
    # their approval counts.
    for _ in range(2):
        ask("Quarterly forecast", 2500)
    for params in ({}, {"q": "quarterly", "sort": "newest"}, {"tab": "decided", "sort": "oldest"}):
        with django_assert_num_queries(9):
            assert bob.get("/approvals/", params).status_code == 200
    with django_assert_num_queries(9):
        assert bob.get("/approvals/list/", {"q": "quarterly", "v": "stale"}, **HTMX).status_code == 200


# --- completed outside the inbox -----------------------------------------------------------------


def test_a_request_completed_outside_the_inbox_is_settled_and_says_by_whom(
    cast: Cast, driver: EngineDriver, django_assert_num_queries: Callable[..., Any]
) -> None:
    """Completed by hand in the console, or through the API: in the Decided tab as "completed",
    with who did it (their audit entries name the operation), never under Expired."""
    by_hand = start_flow(driver, APPROVAL_FUNCTION, {"title": "Completed by hand"})
    by_key = start_flow(driver, APPROVAL_FUNCTION, {"title": "Completed through the API"})
    lapsed = start_flow(driver, APPROVAL_FUNCTION, {"title": "Timed out", "timeout": 60})
    op = by_hand.request.operation
    form = f"/executions/{by_hand.execution.pk}/callbacks/{op.operation_id}/"
    done = client_for(cast.operator).post(
        form, {"outcome": "succeed", "succeed-result": '{"approved": true}'}
    )
    assert done.status_code == 302
    operator.callback_fail(Actor.api("AKIAINBOXKEY"), callback_id(by_key.request.operation), {})
    driver.clock.advance(61)
    for flow in (by_hand, by_key, lapsed):
        flow.finish()

    alice = client_for(cast.alice)
    assert row_ids(alice.get("/approvals/?tab=expired")) == [lapsed.request.pk]
    assert b'data-testid="count-decided">2<' in alice.get("/approvals/").content
    # auth (4), three tab counts, the rows, their approval counts, who completed them (one query)
    with django_assert_num_queries(10):
        decided = alice.get("/approvals/?tab=decided").content.decode()
    assert sorted(row_ids(alice.get("/approvals/?tab=decided"))) == sorted(
        [by_hand.request.pk, by_key.request.pk]
    )
    assert 'data-testid="row-completed">completed outside the inbox by oscar (console)</span>' in decided
    assert (
        'data-testid="row-completed">completed outside the inbox through the API by AKIAINBOXKEY<' in decided
    )
    assert (
        decided.count('data-testid="row-state">completed</span>') == 2 and 'row-state">expired' not in decided
    )

    page = alice.get(f"/approvals/{by_hand.request.pk}/").content.decode()
    notice = page.split('data-testid="approval-completed">')[1].split("</p>")[0]
    assert notice.startswith("Completed outside the inbox by <strong>oscar</strong> (console) on <time")
    assert notice.endswith("the callback succeeded, so nobody decides here any more.")
    assert 'data-testid="approval-expired"' not in page and 'id="decision-form"' not in page
    assert "completed outside the inbox, so this request can no longer be decided" in page
    page = alice.get(f"/approvals/{by_key.request.pk}/").content.decode()
    assert "through the API by <strong>AKIAINBOXKEY</strong>" in page and "the callback failed" in page
    # Trying to decide it anyway stores it as expired: it still shows as completed, by oscar.
    assert alice.post(f"/approvals/{by_hand.request.pk}/decide/", {"outcome": "approve"}).status_code == 409
    assert by_hand.request.status == RequestStatus.EXPIRED
    assert row_ids(alice.get("/approvals/?tab=expired")) == [lapsed.request.pk]
    assert (
        "by <strong>oscar</strong> (console)"
        in alice.get(f"/approvals/{by_hand.request.pk}/").content.decode()
    )
