"""The operations console in headless Chromium against a real server process and its workers.

Nothing is mocked: the server is `durable serve` (ASGI, embedded workers,
scheduler) on the test PostgreSQL database, the pages update over its real
websocket, and every click is a real POST through the console's forms.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from executions.models import Execution
from tests.browser_support import LiveConsole, screenshot
from tests.engine_driver import start
from tests.polling import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def open_detail(page: Any, console: LiveConsole, execution: Execution) -> None:
    page.goto(console.at(f"/executions/{execution.pk}/"))
    page.wait_for_selector("#live-indicator[data-state='live']")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads


def status_on_page(page: Any, status: str, timeout: float = 30_000) -> None:
    page.wait_for_selector(f"#execution-status:has-text('{status}')", timeout=timeout)


def db_status(execution: Execution) -> str:
    return Execution.objects.get(pk=execution.pk).status


def test_a_running_execution_updates_live_without_reloading(console: tuple[LiveConsole, Any]) -> None:
    server, page = console
    execution = start(
        "data-pipeline",
        {
            "job_id": "live-1",
            "record_count": 20,
            "batch_size": 10,
            "rate_limit_wait_seconds": 3,
            "off_peak_wait_seconds": 0,
        },
    )
    wait_until(
        lambda: Execution.objects.get(pk=execution.pk).invocation_count >= 1,
        timeout=20,
        message="the server never picked the execution up",
    )
    open_detail(page, server, execution)
    assert page.inner_text("#execution-status") == "RUNNING"
    # The rate-limit wait ends, the remaining steps run: the page follows by itself.
    status_on_page(page, "SUCCEEDED")
    page.wait_for_selector(f"#timeline-{execution.pk} >> text=verify")
    assert page.evaluate("window.__sameDocument") is True
    screenshot(page, "detail")


def test_stop_an_execution(console: tuple[LiveConsole, Any]) -> None:
    server, page = console
    execution = start("document-approval", {"document_id": "stop-1"})
    wait_until(
        lambda: Execution.objects.get(pk=execution.pk).invocation_count >= 1,
        timeout=20,
        message="the server never picked the execution up",
    )
    open_detail(page, server, execution)
    page.click("#action-stop")
    page.fill("textarea[name=reason], input[name=reason]", "Withdrawn by the author")
    page.click("#confirm-stop")
    status_on_page(page, "STOPPED")
    assert db_status(execution) == "STOPPED"
    assert Execution.objects.get(pk=execution.pk).error == {"ErrorMessage": "Withdrawn by the author"}


def test_bulk_actions_need_rows_or_the_filter_scope(console: tuple[LiveConsole, Any]) -> None:
    """Stop…/Redrive… are disabled with nothing selected, also after Back from the confirmation."""
    server, page = console
    execution = start("document-approval", {"document_id": "bulk-ui-1"})
    page.goto(server.at("/executions/"))
    box = f"input[data-select][value='{execution.pk}']"
    page.wait_for_selector(box)
    assert page.is_disabled("#bulk-stop") and page.is_disabled("#bulk-redrive")
    page.check(box)
    assert page.inner_text("[data-selected-count]") == "1" and page.is_enabled("#bulk-stop")
    page.uncheck(box)
    assert page.is_disabled("#bulk-stop")
    page.check("#scope-filter")  # everything the filter matches: no rows needed
    assert page.is_enabled("#bulk-stop") and page.is_enabled("#bulk-redrive")
    page.check("input[name=scope][value=selection]")
    page.check("#select-all")
    page.click("#bulk-stop")
    page.wait_for_url("**/executions/bulk/")
    page.go_back()
    page.wait_for_selector(box)
    checked = page.is_checked(box)
    assert page.inner_text("[data-selected-count]") == ("1" if checked else "0")
    assert page.is_enabled("#bulk-stop") == checked


def test_redrive_a_failed_execution_after_the_fault_is_switched_off(console: tuple[LiveConsole, Any]) -> None:
    server, page = console
    execution = start(
        "booking",
        {
            "booking_id": "redrive-1",
            "max_attempts": 2,
            "retry_delay_seconds": 1,
            "faults": {"booking.reserve_room": 50},
        },
    )
    wait_until(lambda: db_status(execution) == "FAILED", timeout=30, message="the booking did not fail")
    page.goto(server.at("/faults/"))
    page.click("tr:has-text('booking.reserve_room') [data-testid=fault-off]")
    open_detail(page, server, execution)
    page.click("#action-redrive")
    assert "reserve-room" in page.inner_text("#redrive-rerun")
    assert "check-availability" in page.inner_text("#redrive-replayed")
    page.fill("textarea[name=reason], input[name=reason]", "The room service is back")
    page.click("#confirm-redrive")
    status_on_page(page, "SUCCEEDED")
    assert json.loads(Execution.objects.get(pk=execution.pk).result)["status"] == "confirmed"


def test_complete_a_pending_callback_from_the_detail_page(console: tuple[LiveConsole, Any]) -> None:
    server, page = console
    execution = start("document-approval", {"document_id": "cb-1"})
    wait_until(
        lambda: Execution.objects.get(pk=execution.pk).operations.filter(type="CALLBACK").exists(),
        timeout=20,
        message="the approval callback never started",
    )
    open_detail(page, server, execution)
    page.click("[data-testid=complete-callback]")
    decision = {"approved": True, "comments": "Looks good", "reviewer": "browser"}
    page.fill("#callback-succeed-form textarea", json.dumps(decision))
    page.click("#callback-succeed")
    status_on_page(page, "SUCCEEDED")
    assert json.loads(Execution.objects.get(pk=execution.pk).result)["status"] == "approved"


def test_screenshots_of_home_list_and_registry(console: tuple[LiveConsole, Any]) -> None:
    server, page = console
    finished = [start("order-processing", {"order_id": f"shot-{i}"}) for i in range(3)]
    start("document-approval", {"document_id": "shot-doc"})
    wait_until(
        lambda: all(db_status(e) == "SUCCEEDED" for e in finished),
        timeout=30,
        message="the demo executions did not finish",
    )
    page.goto(server.at("/"))
    page.wait_for_selector("text=Waiting on people")
    # The board and counts cached before the approval parked are fetched again once fresh.
    page.wait_for_selector('[data-testid=waiting-count] >> text="1"', timeout=20_000)
    page.wait_for_selector('[data-testid=count-SUCCEEDED] >> text="3"', timeout=20_000)
    screenshot(page, "home")
    page.goto(server.at("/executions/"))
    page.wait_for_selector("[data-testid=execution-row]")
    assert page.locator("[data-testid=execution-row]").count() >= 4
    # Counts cached before these executions ended are fetched again once fresh ones are there.
    page.wait_for_selector('[data-testid=chip-count-SUCCEEDED] >> text="3"', timeout=20_000)
    screenshot(page, "list")
    page.goto(server.at("/functions/"))
    page.wait_for_selector("[data-testid=function-row]")
    screenshot(page, "registry")
