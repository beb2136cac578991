"""Feedback and access in the console, measured in headless Chromium on a phone-sized screen:
times in the browser's zone, badge and link contrast in both themes, no sideways scroll at 390 px
(list, execution, function, compare, attempts, side panel, faults; the faults page at 1440 px too),
the htmx progress bar, live rows that leave the filter, chip counts and status announcements.

One flow on one console server (each server costs seconds); nothing is mocked.
"""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model

from durable_console.bootstrap import register_demo_functions
from executions.models import Execution
from tests.browser_support import LiveConsole, log_in
from tests.engine_driver import start
from tests.polling import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-test-password"
ZONE = "Asia/Kolkata"  # UTC+05:30 all year: the local text differs from UTC by a fixed offset
PHONE = {"width": 390, "height": 844}

# The WCAG 2 contrast ratio of each visible badge: its computed text colour on its background.
BADGE_CONTRAST = """() => {
  const rgba = (text) => text.match(/[\\d.]+/g).map(Number);
  const channel = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  const luminance = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const shown = Array.from(document.querySelectorAll(".badge")).filter((el) => el.offsetParent !== null);
  return shown.map((el) => {
    const style = getComputedStyle(el);
    const fg = rgba(style.color), bg = rgba(style.backgroundColor);
    const [a, b] = [luminance(fg), luminance(bg)];
    return { badge: el.textContent.trim(), opaque: bg.length === 3 || bg[3] === 1,
             ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05) };
  });
}"""


# Links (text ones: not buttons, chips or the timeline's invocation marks) under 4.5:1 against the
# first opaque background behind them: a notice's, a selected row's, the page's.
LOW_CONTRAST_LINKS = """() => {
  const rgba = (text) => text.match(/[\\d.]+/g).map(Number);
  const channel = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  const luminance = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const behind = (el) => {
    for (let node = el; node; node = node.parentElement) {
      const bg = rgba(getComputedStyle(node).backgroundColor);
      if (bg.length === 3 || bg[3] === 1) return bg;
    }
    return [255, 255, 255];
  };
  const links = Array.from(document.querySelectorAll("a:not(.btn, .chip, .brand, .stat, .inv-mark)"))
    .filter((el) => el.getClientRects().length && getComputedStyle(el).visibility !== "hidden");
  return links.map((el) => {
    const [a, b] = [luminance(rgba(getComputedStyle(el).color)), luminance(behind(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    return { link: el.textContent.trim().slice(0, 40), ratio };
  }).filter((link) => link.ratio < 4.5);
}"""


def parked_on_its_callback(document_id: str) -> Execution:
    execution = start("document-approval", {"document_id": document_id})
    wait_until(
        lambda: execution.operations.filter(type="CALLBACK", status="STARTED").exists(),
        timeout=20,
        message=f"{document_id} never waited on its approval",
    )
    return Execution.objects.get(pk=execution.pk)


def badges_readable(page: Any, where: str) -> None:
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        badges = page.evaluate(BADGE_CONTRAST)
        assert badges, where
        low = [b for b in badges if b["ratio"] < 4.5 or not b["opaque"]]
        assert not low, f"{where}, {scheme} theme: {low}"
    page.emulate_media(color_scheme="light")


def links_readable(page: Any, where: str) -> None:
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        low = page.evaluate(LOW_CONTRAST_LINKS)
        assert not low, f"{where}, {scheme} theme: {low}"
    page.emulate_media(color_scheme="light")


def no_sideways_scroll(page: Any, where: str, width: int = PHONE["width"]) -> None:
    wide = page.evaluate("document.scrollingElement.scrollWidth")
    assert wide <= width, f"{where} is {wide} px wide at {width} px"


def width_of(page: Any, selector: str) -> float:
    return float(page.locator(selector).first.evaluate("(el) => el.getBoundingClientRect().width"))


def test_phone_list_and_detail_times_contrast_progress_and_live_feedback(
    live_console: LiveConsole, chromium: Any
) -> None:
    from playwright.sync_api import expect

    server = live_console
    register_demo_functions()
    get_user_model().objects.create_superuser("admin", "admin@example.com", PASSWORD)
    # A step that fails twice, for the attempts page and the redrive form's notice: it fails while
    # the others park and the browser starts.
    failing = start(
        "booking",
        {
            "booking_id": "feedback-3",
            "max_attempts": 2,
            "retry_delay_seconds": 1,
            "faults": {"booking.reserve_room": 50},
        },
    )
    kept, stopped = parked_on_its_callback("feedback-1"), parked_on_its_callback("feedback-2")

    context = chromium.new_context(viewport=PHONE, timezone_id=ZONE)
    context.set_default_timeout(15_000)
    page = context.new_page()
    log_in(page, server, "admin", PASSWORD)
    page.goto(server.at("/executions/"))
    page.wait_for_selector("#live-indicator[data-state='live']")

    # A moment in the browser's zone, its UTC time on hover.
    started = page.locator(f"#execution-row-{kept.pk} time[data-local]").first
    local = kept.started_at.astimezone(ZoneInfo(ZONE)).strftime("%Y-%m-%d %H:%M:%S")
    expect(started).to_have_text(local)
    assert f"{kept.started_at.astimezone(ZoneInfo('UTC')):%Y-%m-%d %H:%M:%S} UTC" in started.get_attribute(
        "title"
    )
    no_sideways_scroll(page, "the execution list")
    badges_readable(page, "the execution list")  # the chips carry a badge of every status

    wait_until(
        lambda: Execution.objects.get(pk=failing.pk).status == "FAILED", timeout=30, message="no failure"
    )

    # Every htmx request shows the progress bar: hold the chip's request to look at it.
    held: list[Any] = []
    chip_request = re.compile(r".*/executions/\?status=RUNNING.*")

    def hold(route: Any) -> None:
        held.append(route)

    page.route(chip_request, hold)
    page.click("#chip-running")
    expect(page.locator("#htmx-progress")).to_be_visible()
    assert len(held) == 1  # held while the bar showed (the handler runs inside Playwright's calls)
    held[0].continue_()
    page.unroute(chip_request)
    expect(page.locator("#htmx-progress")).to_be_hidden()
    expect(page.locator("#chip-running")).to_have_attribute("aria-pressed", "true")
    running_count = page.locator("[data-testid=chip-count-RUNNING]")

    # Another tab stops one of them: the list keeps the row, dimmed with a note, says so to
    # screen readers, and the chip counts follow.
    other = context.new_page()
    other.goto(server.at(f"/executions/{stopped.pk}/stop/"))
    expect(other.locator("#field-reason [data-testid=required-reason]")).to_have_text("(required)")
    other.fill("textarea[name=reason]", "Feedback test")
    other.click("#confirm-stop")
    other.wait_for_selector("#execution-status:has-text('STOPPED')")
    other.close()  # a page behind another gets one animation frame a second: Playwright's checks crawl
    row = page.locator(f"#execution-row-{stopped.pk}")
    expect(row).to_have_class(re.compile(r"\bunmatched\b"))
    expect(row.locator("[data-testid=unmatched-note]")).to_have_text(
        "now STOPPED: no longer matches the filter"
    )
    expect(page.locator("#live-announcer")).to_contain_text("is now STOPPED")
    # The chip shown may have been counted before the failing booking failed (the counts cache
    # is fresh for 5 s): it catches up with the database, where only `kept` still runs.
    assert list(Execution.objects.filter(status="RUNNING").values_list("pk", flat=True)) == [kept.pk]
    expect(running_count).to_have_text("1", timeout=15_000)

    # Back after an htmx navigation restores the page from htmx's history cache: select-all,
    # its counter and the buttons still work, and no progress bar is left from the snapshot.
    page.click("#chip-all")
    expect(page.locator("#chip-all")).to_have_attribute("aria-pressed", "true")
    page.go_back()
    expect(page.locator("#chip-running")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#htmx-progress")).to_be_hidden()
    page.check("#select-all")
    boxes = page.locator("input[data-select]").count()
    expect(page.locator("[data-selected-count]")).to_have_text(str(boxes))
    expect(page.locator("#bulk-stop")).to_be_enabled()
    links_readable(page, "the list with its rows selected")

    # The detail page on the phone: no sideways scroll, readable badges, times localized.
    page.goto(server.at(f"/executions/{kept.pk}/"))
    page.wait_for_selector("#live-indicator[data-state='live']")
    expect(page.locator("[data-testid=execution-header] time[data-local]").first).to_have_text(local)
    no_sideways_scroll(page, "the execution page")
    badges_readable(page, "the execution page")
    # The timeline's bars get the panel's width (squeezed into a 4th column they were ~20 px).
    assert width_of(page, "table.timeline tbody tr[data-depth] .track") >= 250

    # The other wide pages on the phone: tables scroll inside their own frames, not the page.
    page.goto(server.at("/functions/document-approval/"))
    page.keyboard.press("Tab")  # the skip link, shown on focus
    expect(page.locator(".skip-link")).to_be_focused()
    links_readable(page, "the function page with the skip link shown")
    no_sideways_scroll(page, "the function page")
    page.goto(server.at(f"/executions/{kept.pk}/compare/?with={stopped.pk}"))
    expect(page.locator("[data-testid=diff-table]").first).to_be_visible()
    no_sideways_scroll(page, "the compare page")
    step = failing.operations.get(name="reserve-room").operation_id
    page.goto(server.at(f"/executions/{failing.pk}/steps/{step}/attempts/"))
    expect(page.locator("[data-testid=attempt-diff]")).to_have_count(1)
    no_sideways_scroll(page, "the attempts page")
    assert width_of(page, "td.attempt-text") >= 250  # the error under its attempt, not a narrow column
    page.goto(server.at(f"/executions/{failing.pk}/operations/{step}/"))
    no_sideways_scroll(page, "the operation panel")
    assert width_of(page, "[data-testid=panel-attempt] td:last-child") >= 250  # was one letter a line
    page.goto(server.at(f"/executions/{failing.pk}/redrive/"))
    links_readable(page, "the redrive form and its notice")
    page.goto(server.at("/faults/"))
    no_sideways_scroll(page, "the faults page")

    # The faults page on a desktop: every card holds its table, so no button sits under the next
    # card (a trial click fails when another element would receive it).
    page.set_viewport_size({"width": 1440, "height": 900})
    no_sideways_scroll(page, "the faults page", width=1440)
    for card in page.locator("section.panel:has([data-testid=fault-off])").all():
        button = card.locator("[data-testid=fault-off]").last
        button.click(trial=True)
    context.close()
