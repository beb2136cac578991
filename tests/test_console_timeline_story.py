"""The execution page tells the whole story: decoded payloads, the operation panel, redrives,
failures inside folded contexts, callbacks completed by hand (issue 12, items 1, 2 and 6)."""

from __future__ import annotations

import datetime
import decimal
import html
import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aws_durable_execution_sdk_python.serdes import EXTENDED_TYPES_SERDES
from django.test import Client

from examples import ledger
from examples.switches import fault_switch_set
from executions import operator
from executions.audit import Actor
from executions.console import formatting
from executions.console.payloads import decode_payload
from executions.console.timescale import AXIS_GAP_PX, AXIS_TRACK_PX, AxisLabel, build_scale
from executions.models import Execution, HistoryEvent, Operation
from executions.workers import handler_db
from tests.console_support import Cast, finished, make_cast, register_demos
from tests.engine_driver import EngineDriver, callback_id, engine_driver, refreshed, start

AUTH = 4  # session, user, user permissions, group permissions


# --- decoding (no database) -------------------------------------------------------------------


def sdk(value: Any) -> str:
    """``value`` as the SDK checkpoints it (its extended serializer: type-tagged envelopes)."""
    return EXTENDED_TYPES_SERDES.serialize(value)


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        (sdk({"hotel": "Grand Budapest", "nights": 3}), {"hotel": "Grand Budapest", "nights": 3}),
        (
            sdk({"rows": [1, {"pair": (1, "a")}], "none": None}),
            {"rows": [1, {"pair": [1, "a"]}], "none": None},
        ),
        (
            sdk(
                {"price": decimal.Decimal("12.50"), "id": uuid.UUID(int=7), "day": datetime.date(2026, 1, 2)}
            ),
            {"price": "12.50", "id": str(uuid.UUID(int=7)), "day": "2026-01-02"},
        ),
        (
            sdk({"blob": b"xy", "at": datetime.datetime(2026, 1, 2, 3, 4, 5)}),
            {"blob": "base64:eHk=", "at": "2026-01-02T03:04:05"},
        ),
        (sdk(("a", 1.5, True)), ["a", 1.5, True]),
        (json.dumps(json.dumps({"inner": [1, 2]})), {"inner": [1, 2]}),  # JSON inside JSON
    ],
)
def test_envelopes_and_json_inside_json_are_decoded(stored: str, shown: Any) -> None:
    decoded = decode_payload(stored)
    assert decoded.decoded and decoded.is_json and decoded.raw == stored
    assert decoded.value == shown


@pytest.mark.parametrize(
    ("stored", "is_json"),
    [
        ('{"t": "zz", "v": 1}', True),  # unknown tag
        ('{"t": "i", "v": "seven"}', True),  # a value of the wrong shape for its tag
        ('{"t": "m", "v": {"x": {"t": "qq", "v": 1}}}', True),  # an unknown tag deep inside
        ('{"t": "b", "v": 1}', True),
        ("not json at all", False),
        ("[" * 5000 + "]" * 5000, False),  # deeper than the parser goes
        ('{"a": {"t": "s", "v": "x"}}', True),  # plain JSON holding an envelope-like object: as it is
        (sdk([1, 2, 3]), True),  # plain JSON: nothing to decode
    ],
)
def test_unknown_shapes_fall_back_to_the_raw_text(stored: str, is_json: bool) -> None:
    decoded = decode_payload(stored)
    assert not decoded.decoded and decoded.is_json is is_json and decoded.raw == stored
    assert decoded.text == (stored if not is_json else json.dumps(json.loads(stored), indent=2))


def test_batch_results_and_error_data_decode() -> None:
    from aws_durable_execution_sdk_python.concurrency.models import (
        BatchItem,
        BatchItemStatus,
        BatchResult,
        CompletionReason,
    )

    batch = BatchResult(
        [BatchItem(0, BatchItemStatus.SUCCEEDED, {"n": 1}, None)], CompletionReason.ALL_COMPLETED
    )
    assert decode_payload(sdk(batch)).value == {
        "all": [{"index": 0, "status": "SUCCEEDED", "result": {"n": 1}, "error": None}],
        "completionReason": "ALL_COMPLETED",
    }


# --- pages ------------------------------------------------------------------------------------


@pytest.fixture
def cast(db: None) -> Cast:
    return make_cast()


@pytest.fixture
def driver() -> Iterator[EngineDriver]:
    register_demos()
    with engine_driver() as running:
        yield running
    ledger.close()
    handler_db.close()


def get(client: Client, path: str, **headers: str) -> str:
    response = client.get(path, **headers)
    assert response.status_code == 200, (path, response.status_code)
    return response.content.decode()


def row(page: str, op: Operation) -> str:
    match = re.search(rf'<tr id="op-{op.operation_id}".*?</tr>', page, re.S)
    assert match, f"no timeline row for {op.name}"
    return match.group(0)


def text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def event_details(client: Client, execution: Execution, event: HistoryEvent) -> str:
    """A history event's details as the page shows them: fetched when opened, or in the page."""
    response = client.get(f"/executions/{execution.pk}/history/{event.event_id}/")
    return (
        response.content.decode()
        if response.status_code == 200
        else get(client, f"/executions/{execution.pk}/")
    )


AXIS_LABEL = re.compile(r'<span class="axis-label[^"]*" style="--x:([\d.]+)%;--n:(\d+)"[^>]*>([^<]*)</span>')


def assert_axis_labels_apart(page: str) -> None:
    """The axis's labels, placed as the CSS places them on the narrowest track spaced for: apart."""
    labels = [(float(x), int(n), html.unescape(label)) for x, n, label in AXIS_LABEL.findall(page)]
    assert labels and labels[0][2] == "0" and all(n == len(label) for _, n, label in labels)
    spans = sorted(AxisLabel(label, x, "").extent(AXIS_TRACK_PX) for x, _, label in labels)
    assert spans[0][0] >= 0 and spans[-1][1] <= AXIS_TRACK_PX
    for (_, right), (left, _) in itertools.pairwise(spans):
        assert right + AXIS_GAP_PX <= left, labels


def test_axis_labels_never_overlap_when_breaks_are_close() -> None:
    """Three long idle gaps close together near the end (the review's "≈ 4 min 59 s≈ 1 min 43 s")."""
    start = datetime.datetime(2026, 11, 30, 12, tzinfo=datetime.UTC)

    def at(seconds: float) -> datetime.datetime:
        return start + datetime.timedelta(seconds=seconds)

    busy = [(at(0), at(30)), (at(329), at(330)), (at(433), at(434)), (at(700), at(701))]
    scale = build_scale(start, at(701), busy)
    assert len(scale.breaks) == 3
    labels = scale.axis_labels("11 min 41 s (now)")
    assert [label.text for label in labels[:2]] == ["0", "11 min 41 s (now)"]  # the ends always
    assert 2 < len(labels) < 2 + len(scale.breaks)  # the longest break kept, a close one left out
    assert labels[2].text == "≈ 4 min 59 s"
    page = "".join(
        f'<span class="axis-label" style="{label.style}">{html.escape(label.text)}</span>' for label in labels
    )
    assert_axis_labels_apart(page)


def test_json_counts_and_long_countdowns_read_right() -> None:
    tree = str(formatting.json_tree('{"email": "a@example.com", "tags": ["x"]}'))
    assert ">1 key<" not in tree and ">2 keys<" in tree and ">1 item<" in tree
    assert ">1 key<" in str(formatting.json_tree('{"email": "a@example.com"}'))
    # Past two days a countdown keeps its minutes, as "47 h 52 min" does just under them.
    assert formatting.countdown_text(48 * 3600 + 8 * 60) == "in 2 d 0 h 8 min"
    assert formatting.countdown_text(47 * 3600 + 52 * 60) == "in 47 h 52 min"
    assert formatting.countdown_text(3 * 86400) == "in 3 d"


def redriven_booking(driver: EngineDriver) -> Execution:
    """reserve-room fails twice, the execution fails, an hour passes, then a redrive succeeds."""
    payload = {"booking_id": "story-1", "max_attempts": 2, "faults": {"booking.reserve_room": 50}}
    failed = finished(driver, start("booking", payload))
    assert failed.status == "FAILED"
    driver.clock.advance(3600)
    fault_switch_set("booking.reserve_room", disabled=True)
    operator.redrive(Actor.cli(), failed.arn, "the outage is over")
    driver.clock.advance(1)
    done = finished(driver, failed)
    assert done.status == "SUCCEEDED"
    return done


@pytest.mark.django_db(transaction=True)
def test_a_redrive_is_marked_and_the_attempts_before_it_kept(cast: Cast, driver: EngineDriver) -> None:
    execution = redriven_booking(driver)
    client = cast.client("viewer")
    page = get(client, f"/executions/{execution.pk}/")
    marker = re.search(r'<span class="redrive-mark"[^>]*data-testid="redrive-marker"', page)
    assert marker and "the outage is over" in marker.group(0) and "(cli)" in marker.group(0)
    assert 'data-testid="timeline-break"' in page and "≈ 1 h" in page  # the hour before the redrive
    reserve = Operation.objects.get(execution=execution, name="reserve-room")
    reserve_row = row(page, reserve)
    assert "data-fail" in reserve_row and 'class="bar earlier"' in reserve_row
    # Attempts counted across the redrive: two failed before it, the run after it is attempt 3.
    assert "attempt 3 · attempts 1-2 · failed before the redrive · attempts diff" in text(reserve_row)
    summary = re.search(r'data-testid="redrive-summary"[^>]*>(.*?)</span></td>', page, re.S)
    assert summary and re.match(r"Redriven by \S+ \(cli\) <time datetime=", summary.group(1))
    assert "the outage is over" in summary.group(1)
    assert_axis_labels_apart(page)
    # The header counts the operations the timeline shows.
    shown = re.search(r'<span class="muted small">(\d+) operations?</span>', page)
    assert shown and f'data-testid="operation-count">{shown.group(1)}</dd>' in page
    # The history shows the step's result decoded, with the stored envelope one click away.
    succeeded = HistoryEvent.objects.get(
        execution=execution, event_type="StepSucceeded", name="check-availability"
    )
    details = event_details(client, execution, succeeded)
    assert "&quot;hotel&quot;: &quot;Grand Budapest Hotel&quot;" in details
    raws = details.split('<details class="raw">')[1:]  # the stored text, one click away
    assert any(r"{\&quot;t\&quot;:\&quot;m\&quot;" in raw for raw in raws)

    attempts = get(client, f"/executions/{execution.pk}/steps/{reserve.operation_id}/attempts/")
    assert attempts.count('data-testid="before-redrive"') == 2
    assert "Attempt 3 (right) against attempt 2 · failed before the redrive (left)" in text(attempts)


@pytest.mark.django_db(transaction=True)
def test_the_panel_shows_a_steps_decoded_result_attempts_and_links(cast: Cast, driver: EngineDriver) -> None:
    execution = redriven_booking(driver)
    reserve = Operation.objects.get(execution=execution, name="reserve-room")
    path = f"/executions/{execution.pk}/operations/{reserve.operation_id}/"
    panel = get(cast.client("viewer"), path, HTTP_HX_REQUEST="true")
    assert not panel.lstrip().startswith("<!doctype")  # the partial, for the side panel
    result = re.search(r'data-testid="panel-result">(.*?)</div></div>', panel, re.S)
    assert result and '"confirmation" : "cnf-' in text(result.group(1))
    assert 'data-testid="raw-payload"' in panel
    assert panel.count('data-testid="panel-attempt"') == 3 and panel.count(">before the redrive<") == 2
    numbers = re.findall(r'data-testid="panel-attempt"[^>]*><td class="num">(\d+)</td>', panel)
    assert numbers == ["1", "2", "3"]  # counted across the redrive: never two "#1"
    assert '3 <span class="muted">(2 before the redrive)</span>' in panel
    assert 'data-testid="panel-attempts-link"' in panel
    # Times with their date (milliseconds where they tell a step's moments apart).
    assert re.search(
        r'data-testid="panel-time"><time [^>]*data-local="datetime-ms"[^>]*>\d{4}-\d\d-\d\d ', panel
    )
    # Without htmx the same panel is a page of its own.
    assert "<!doctype html>" in get(cast.client("operator"), path)

    for role, status in (("approver", 403), ("nobody", 403), (None, 302)):
        assert cast.client(role).get(path).status_code == status, role
    assert cast.client("viewer").get(f"/executions/{execution.pk}/operations/nope/").status_code == 404
    root = Operation.objects.get(execution=execution, type="EXECUTION")
    assert (
        cast.client("viewer").get(f"/executions/{execution.pk}/operations/{root.operation_id}/").status_code
        == 404
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("records", [12, 40])
def test_a_folded_map_says_how_many_items_failed_and_its_panel_costs_the_same_queries(
    cast: Cast, driver: EngineDriver, records: int, django_assert_num_queries: Callable[..., Any]
) -> None:
    payload = {"record_count": records, "batch_size": 4, "poison_batches": [0, 2], "max_attempts": 1}
    execution = finished(driver, start("batch-processing", payload))
    assert execution.status == "SUCCEEDED"
    batches = records // 4
    client = cast.client("operator")
    page = get(client, f"/executions/{execution.pk}/")
    the_map = Operation.objects.get(execution=execution, name="process-batches")
    map_row = row(page, the_map)
    assert the_map.status == "SUCCEEDED" and "data-fail" in map_row
    assert f'data-testid="failed-descendants">2 of {batches} failed<' in map_row
    assert re.search(r'<button [^>]*data-failures-only="#timeline-\d+"[^>]*>Failures only</button>', page)
    # the execution, the operation, its events, its children's statuses (a top-level one: no parent)
    with django_assert_num_queries(AUTH + 4):
        panel = get(
            client, f"/executions/{execution.pk}/operations/{the_map.operation_id}/", HTTP_HX_REQUEST="true"
        )
    assert f'data-testid="panel-failed-children">2 of {batches} failed<' in panel


@pytest.mark.django_db(transaction=True)
def test_a_verification_completed_by_hand_is_labelled_with_who_did_it(
    cast: Cast, driver: EngineDriver
) -> None:
    execution = start("user-onboarding", {"user_id": "u-story", "email": "grace@example.com"})
    driver.settle()
    callback = Operation.objects.get(execution=execution, type="CALLBACK")
    assert callback.name == "verify-email create callback id"  # the SDK's name, inside "verify-email"
    client = cast.client("operator")
    page = get(client, f"/executions/{execution.pk}/")
    assert 'title="verify-email">verify-email</button>' in row(page, callback)
    assert ">Complete verify-email…</a>" in page
    panel_path = f"/executions/{execution.pk}/operations/{callback.operation_id}/"
    waiting = get(client, panel_path, HTTP_HX_REQUEST="true")
    assert re.search(r'<dt>Callback times out</dt><dd [^>]*><time [^>]*data-local="datetime"', waiting)

    form_path = f"/executions/{execution.pk}/callbacks/{callback.operation_id}/"
    form = get(client, form_path)
    assert "Complete callback verify-email by hand" in form and 'data-testid="expected-result"' in form
    assert re.search(r"<textarea[^>]*>\s*true</textarea>", form), "the verification's result is prefilled"
    response = client.post(form_path, {"outcome": "succeed", "succeed-result": "true"})
    assert response.status_code == 302
    driver.run_until(lambda: refreshed(execution).is_terminal)

    page = get(client, f"/executions/{execution.pk}/")
    callback_row = text(row(page, Operation.objects.get(pk=callback.pk)))
    assert "completed by hand by operator (console)" in callback_row and "expired" not in callback_row
    # Completed: its panel no longer lists a timeout.
    done = get(client, panel_path, HTTP_HX_REQUEST="true")
    assert "Ended</dt>" in done and "times out" not in done and "Heartbeat" not in done

    # The history names the callback by its own name, and its operation link opens the side
    # panel (rendered timeline row or not); times in the details are time tags, not epoch seconds.
    history = dict(re.findall(r'data-event-type="(\w+)">(.*?)</tr>', page, re.S))
    started = history["CallbackStarted"]
    assert (
        f'<a href="{panel_path}" data-op-link="{callback.operation_id}" class="small">verify-email</a>'
        in started
    )
    assert "create callback id" not in started
    invocation = history["InvocationCompleted"]
    assert re.search(r"StartTimestamp: <time datetime=\S+ data-local=\"datetime\"", invocation)
    event = HistoryEvent.objects.filter(execution=execution, event_type="InvocationCompleted").first()
    assert event is not None
    details = get(client, f"/executions/{execution.pk}/history/{event.event_id}/")
    times = re.search(r'data-testid="event-times">(.*?)</dl>', details, re.S)
    assert times and "<dt>StartTimestamp</dt><dd><time " in times.group(1)
    readable, raw = details.split('<details class="raw">')
    assert "StartTimestamp" not in readable.split("</dl>")[1] and "StartTimestamp" in raw


@pytest.mark.django_db(transaction=True)
def test_a_callback_completed_through_the_api_names_the_key(cast: Cast, driver: EngineDriver) -> None:
    execution = start("user-onboarding", {"user_id": "u-api", "email": "ada@example.com"})
    driver.settle()
    callback = Operation.objects.get(execution=execution, type="CALLBACK")
    operator.callback_succeed(Actor.api("AKIASTORYKEY"), callback_id(callback), b"true")
    driver.run_until(lambda: refreshed(execution).is_terminal)
    page = get(cast.client("operator"), f"/executions/{execution.pk}/")
    callback_row = text(row(page, Operation.objects.get(pk=callback.pk)))
    assert "completed through the API by AKIASTORYKEY" in callback_row and "by hand" not in callback_row


@pytest.mark.django_db(transaction=True)
def test_an_approvals_callback_form_starts_from_the_decision_shape(cast: Cast, driver: EngineDriver) -> None:
    execution = start("document-approval", {"document_id": "doc-story"})
    driver.settle()
    callback = Operation.objects.get(execution=execution, type="CALLBACK")
    form = get(cast.client("operator"), f"/executions/{execution.pk}/callbacks/{callback.operation_id}/")
    assert "Complete callback await-approval by hand" in form
    textarea = re.search(r"<textarea[^>]*>(.*?)</textarea>", form, re.S)
    assert textarea and json.loads(html.unescape(textarea.group(1))) == {
        "approved": True,
        "comments": "",
        "reviewer": "operator",
    }
