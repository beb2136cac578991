"""A big execution's detail page in headless Chromium: a folded context's rows arrive when it is
expanded, "more" rows and the history's "more" link append, a live refresh keeps what was opened,
and an event's details load when its row is opened."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from tests.big_execution_support import big_execution
from tests.browser_support import LiveConsole, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-test-password"


def test_rows_of_a_big_execution_come_on_demand_and_stay_across_a_live_refresh(
    live_console: LiveConsole, page: Any
) -> None:
    from playwright.sync_api import expect

    execution = big_execution(top=20, items=120)  # 20 steps, a map of 120 items, a small parallel
    get_user_model().objects.create_superuser("admin", "admin@example.com", PASSWORD)
    log_in(page, live_console, "admin", PASSWORD)
    page.goto(live_console.at(f"/executions/{execution.pk}/"))
    expect(page.locator("#op-map")).to_be_visible()
    expect(page.locator("#op-item-0")).to_have_count(0)

    # Expanding the folded map fetches its first rows; its "more" row the next ones.
    page.click("#op-map [data-lazy-toggle]")
    expect(page.locator("#op-item-0")).to_be_visible()
    expect(page.locator("#op-map [data-toggle]")).to_have_attribute("aria-expanded", "true")
    expect(page.locator("#op-item-60")).to_have_count(0)
    page.click("#more-map-50 button")
    expect(page.locator("#op-item-60")).to_be_visible()
    expect(page.locator(f"#timeline-{execution.pk}-state input[name=shown]")).to_have_value("map:100")

    # The history's "more" link appends the next page; an event's details load when opened.
    rows = page.locator("#history-rows tr")
    expect(rows).to_have_count(200)
    page.click("#history-more")
    expect(rows).to_have_count(400)
    expect(page.locator("#history-pages")).to_have_value("2")
    page.locator("#history-rows tr").nth(2).locator("summary").click()
    expect(page.locator("#history-rows tr").nth(2).locator("pre.json").first).to_contain_text("Payload")

    # A live refresh renders the same rows and pages again.
    with page.expect_response(lambda response: "/live/" in response.url):
        page.evaluate("htmx.trigger('#execution-refresher', 'live-refresh')")
    expect(page.locator("#op-item-60")).to_be_visible()
    expect(rows).to_have_count(400)

    # Folding the map again is the page's own business: its rows are hidden, not fetched again.
    page.click("#op-map [data-toggle]")
    expect(page.locator("#op-item-0")).to_be_hidden()
