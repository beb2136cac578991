"""The execution page's timeline in headless Chromium: a redriven execution's story and the side panel.

One flow against a real server process (``durable serve``, embedded workers) on the
test database: a booking fails, the outage ends, it is redriven and succeeds; the page
marks the redrive, keeps the attempts before it, and a click on a row opens the step's
decoded result in the side panel (issue 12, items 1 and 2).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from examples.switches import fault_switch_set
from executions.models import Execution, Operation
from tests.browser_support import LiveConsole, screenshot
from tests.engine_driver import start
from tests.polling import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def status(execution: Execution) -> str:
    return Execution.objects.get(pk=execution.pk).status


def test_a_redriven_execution_shows_its_marker_and_a_rows_decoded_result(
    console: tuple[LiveConsole, Any],
) -> None:
    from playwright.sync_api import expect

    server, page = console
    payload = {
        "booking_id": "story-browser",
        "max_attempts": 2,
        "retry_delay_seconds": 1,
        "faults": {"booking.reserve_room": 50},
    }
    execution = start("booking", payload)
    wait_until(lambda: status(execution) == "FAILED", timeout=30, message="the booking did not fail")
    fault_switch_set("booking.reserve_room", disabled=True)
    page.goto(server.at(f"/executions/{execution.pk}/redrive/"))
    page.fill("textarea[name=reason], input[name=reason]", "the room service is back")
    page.click("#confirm-redrive")
    expect(page.locator("#execution-status")).to_have_text("SUCCEEDED", timeout=30_000)

    page.reload()  # the whole page as it is now (the live refresh swaps the same regions)
    marker = page.locator("[data-testid=redrive-marker]")
    expect(marker).to_have_count(1)
    assert "the room service is back" in (marker.get_attribute("title") or "")
    reserve = Operation.objects.get(execution=execution, name="reserve-room")
    expect(page.locator(f"#op-{reserve.operation_id} [data-testid=earlier-run]")).to_contain_text(
        "failed before the redrive"
    )

    # A click on the row (not on a link) opens the operation in the side panel, decoded.
    check = Operation.objects.get(execution=execution, name="check-availability")
    page.locator(f"#op-{check.operation_id} td").nth(1).click()
    panel = page.locator("#op-panel")
    expect(panel).to_be_visible()
    result = panel.locator("[data-testid=panel-result]")
    expect(result).to_contain_text('"hotel"')
    expect(result).to_contain_text('"Grand Budapest Hotel"')
    expect(result.locator(".json-tree")).not_to_contain_text('"t":"m"')  # no envelope on screen…
    expect(result.locator("[data-testid=raw-payload] pre")).to_be_hidden()  # …but one click away
    result.locator("[data-testid=raw-payload] summary").click()
    expect(result.locator("[data-testid=raw-payload] pre")).to_contain_text('{"t":"m"')
    screenshot(page, "detail-operation-panel")
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()

    # "Failures only" keeps the step that failed before the redrive, hides the others.
    page.click("[data-failures-only]")
    expect(page.locator(f"#op-{reserve.operation_id}")).to_be_visible()
    expect(page.locator(f"#op-{check.operation_id}")).to_be_hidden()
    # Those rows came from the server (every failing one, rendered on the page or not); switching
    # off puts the page's own rows back.
    expect(page.locator("tbody[data-timeline-rows][data-failure-rows]")).to_have_count(1)
    page.click("[data-failures-only]")
    expect(page.locator(f"#op-{check.operation_id}")).to_be_visible()
    expect(page.locator("tbody[data-failure-rows]")).to_have_count(0)

    # The axis's labels (the ends, the hour before the redrive) stay apart and inside the axis.
    layout = page.evaluate(AXIS_LAYOUT)
    spans = sorted(layout["labels"])
    left, right = layout["axis"]
    assert len(spans) >= 2 and all(left - 0.5 <= a and b <= right + 0.5 for a, b in spans), layout
    assert all(b <= a for (_, b), (a, _) in itertools.pairwise(spans)), layout

    # A history row's operation opens the side panel (its timeline row need not be on the page).
    page.locator(f'#history-table a[data-op-link="{reserve.operation_id}"]').first.click()
    expect(panel).to_be_visible()
    expect(page.locator("#op-panel-title")).to_have_text("reserve-room")
    expect(panel.locator("[data-testid=panel-attempt-number]")).to_contain_text("3 (2 before the redrive)")


# Each shown label's text box (a Range measures the glyphs, not the element) and the axis's box.
AXIS_LAYOUT = """() => {
  const axis = document.querySelector("[data-axis]");
  const box = axis.getBoundingClientRect();
  const labels = [...axis.querySelectorAll(".axis-label:not([data-hidden])")].map((label) => {
    const range = document.createRange();
    range.selectNodeContents(label);
    const r = range.getBoundingClientRect();
    return [r.left, r.right];
  });
  return { axis: [box.left, box.right], labels };
}"""
