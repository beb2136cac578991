"""Cached counts in a real browser: a page that showed counts computed before it fetches itself
again, so a change nobody pushed still reaches the screen (executions/queries/cache.py)."""

from __future__ import annotations

from typing import Any

import pytest

from executions.models import Execution, Operation
from tests.browser_support import LiveConsole
from tests.engine_driver import start
from tests.polling import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def count_shows(status: str, value: int) -> str:
    return f"[data-testid=count-{status}] .value:text-is('{value}')"


def test_home_counts_catch_up_with_a_change_nobody_pushed(console: tuple[LiveConsole, Any]) -> None:
    server, page = console
    parked = [start("document-approval", {"document_id": f"cached-{n}"}) for n in range(2)]
    open_callbacks = Operation.objects.filter(execution__in=parked, type="CALLBACK", status="STARTED")
    wait_until(
        lambda: open_callbacks.count() == 2,
        timeout=30,
        message="the approvals did not park on their callbacks",
    )
    page.goto(server.at("/"))
    page.wait_for_selector(count_shows("RUNNING", 2))

    # Behind the engine's back: no live update announces this change.
    Execution.objects.filter(pk=parked[0].pk).update(status="FAILED")
    page.goto(server.at("/"))
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    # The counts shown were computed before this view, so the page will look again.
    assert page.locator("#home-live-refresh").count() == 1
    page.wait_for_selector(count_shows("FAILED", 1), timeout=15_000)
    page.wait_for_selector(count_shows("RUNNING", 1))
    assert page.evaluate("window.__sameDocument === true")
