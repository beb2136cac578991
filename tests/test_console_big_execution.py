"""Big executions stay fast: the detail page renders expanded timeline rows only and a page of
history, in a fixed number of queries; the rest comes on demand (keyset "more" pages, a folded
context's rows on expand). And the home page's exact counts, maintained by the database, stay
exact across start, finish, redrive, delete, purge and concurrent writers.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection, connections
from django.test import Client

from examples import ledger
from examples.switches import fault_switch_set
from executions import operator, services
from executions.audit import Actor
from executions.console.timeline_window import ROW_BUDGET, WINDOW
from executions.models import Operation
from executions.queries import console as cq
from executions.queries.history import HISTORY_PAGE
from tests.big_execution_support import big_execution
from tests.console_support import Cast, finished, make_cast, register_demos
from tests.engine_driver import EngineDriver, engine_driver, start

AUTH = 4  # session, user, user permissions, group permissions
ROW = re.compile(r'<tr id="op-([^"]+)" data-depth="(\d+)"')
EVENT_ID = re.compile(r'data-testid="history-row"[^>]*>\s*<td class="num">(\d+)</td>')
MORE_HISTORY = re.compile(r'id="history-more"[^>]*hx-get="([^"]+)"')


@pytest.fixture
def cast(db: None) -> Cast:
    return make_cast()


def get(client: Client, path: str, **params: str) -> str:
    response = client.get(path, params, HTTP_HX_REQUEST="true")
    assert response.status_code == 200, path
    body = response.content
    if response.get("Content-Encoding") == "gzip":
        import gzip

        body = gzip.decompress(body)
    return body.decode()


def rows(page: str) -> list[tuple[str, int]]:
    return [(op_id, int(depth)) for op_id, depth in ROW.findall(page)]


@pytest.mark.django_db
@pytest.mark.parametrize(("top", "items"), [(5, 3), (150, 300)])
def test_the_detail_page_costs_the_same_queries_and_renders_a_bounded_page(
    cast: Cast, top: int, items: int, django_assert_num_queries: Callable[..., Any]
) -> None:
    execution = big_execution(top=top, items=items)
    client = cast.client("viewer")
    # the execution, operations, invocations, child executions, event types, the first page
    with django_assert_num_queries(AUTH + 6):
        page = get(client, f"/executions/{execution.pk}/")
    shown = rows(page)
    history_rows = EVENT_ID.findall(page)
    assert len(history_rows) == min(HISTORY_PAGE, execution.events.count())
    if items < 10:  # everything fits: every row, contexts expanded, no "more" anywhere
        assert len(shown) == Operation.objects.filter(execution=execution).count()
        assert 'data-testid="timeline-more"' not in page and "data-lazy-toggle" not in page
        assert 'id="history-more"' not in page
        return
    assert len(shown) <= ROW_BUDGET
    assert [op_id for op_id, _ in shown] == [f"step-{index}" for index in range(WINDOW)]
    url = f"/executions/{execution.pk}/timeline/rows/"
    assert f'hx-get="{url}?parent=-&amp;skip={WINDOW}"' in page
    rest = top + 2 - WINDOW  # the other steps, the map and the parallel
    assert f'Show {WINDOW} more</button> <span class="muted small">{rest} operations not shown' in page
    assert 'id="history-more"' in page
    # "More" rows bring the next top-level rows; the map comes folded, its 900 rows not with it.
    top_level, skip, fetched = [op_id for op_id, _ in shown], WINDOW, page
    while f"parent=-&amp;skip={skip}" in fetched:
        with django_assert_num_queries(AUTH + 4):  # the execution, operations, invocations, children
            fetched = get(client, url, parent="-", skip=str(skip), shown=f"-:{skip}")
        top_level += [op_id for op_id, depth in rows(fetched) if depth == 0]
        assert not any(op_id.startswith("item-") for op_id, _ in rows(fetched))
        skip += WINDOW
    assert top_level == [f"step-{index}" for index in range(top)] + ["map", "fan-out"]
    assert re.search(r'<tr id="op-map"[^>]*>.*?data-lazy-toggle', fetched)


@pytest.mark.django_db
def test_history_more_pages_follow_by_keyset_without_gaps_or_duplicates(
    cast: Cast, django_assert_num_queries: Callable[..., Any]
) -> None:
    execution = big_execution(top=40, items=100)  # 347 operations, 694 events
    total = execution.events.count()
    client = cast.client("viewer")
    page = get(client, f"/executions/{execution.pk}/")
    seen = [int(event_id) for event_id in EVENT_ID.findall(page)]
    pages = 1
    while match := MORE_HISTORY.search(page):
        with django_assert_num_queries(AUTH + 3):  # the execution, event types, the page
            page = get(client, html.unescape(match.group(1)))
        pages += 1
        assert f'id="history-pages" name="pages" value="{pages}" hx-swap-oob="true"' in page
        seen += [int(event_id) for event_id in EVENT_ID.findall(page)]
    assert seen == list(range(1, total + 1))
    assert pages == -(-total // HISTORY_PAGE)
    # A live refresh renders the pages opened so far, from the first event.
    live = get(client, f"/executions/{execution.pk}/live/", pages="2")
    assert [int(event_id) for event_id in EVENT_ID.findall(live)] == list(range(1, 2 * HISTORY_PAGE + 1))
    # One event type, paged the same way.
    page = get(client, f"/executions/{execution.pk}/history/", type="Succeeded")
    typed = [int(event_id) for event_id in EVENT_ID.findall(page)]
    while match := MORE_HISTORY.search(page):
        page = get(client, html.unescape(match.group(1)))
        typed += [int(event_id) for event_id in EVENT_ID.findall(page)]
    assert typed == list(range(2, total + 1, 2))
    # An event's details come when its row is opened (they would weigh most of the page).
    first = get(client, f"/executions/{execution.pk}/")
    assert f'hx-get="/executions/{execution.pk}/history/3/" hx-trigger="toggle once"' in first
    details = get(client, f"/executions/{execution.pk}/history/3/")
    assert "Payload" in details and "<tr" not in details
    assert client.get(f"/executions/{execution.pk}/history/{total + 1}/").status_code == 404
    nobody = cast.client("nobody")
    for path in ("history/3/", "timeline/rows/?parent=map", "history/?after=200"):
        assert nobody.get(f"/executions/{execution.pk}/{path}").status_code in (302, 403)


@pytest.mark.django_db
def test_a_folded_context_renders_its_rows_when_expanded_and_keeps_them_on_refresh(
    cast: Cast, django_assert_num_queries: Callable[..., Any]
) -> None:
    execution = big_execution(top=3, items=250)
    client = cast.client("viewer")
    page = get(client, f"/executions/{execution.pk}/")
    assert ("map", 0) in rows(page) and not any(op_id.startswith("item-") for op_id, _ in rows(page))
    url = f"/executions/{execution.pk}/timeline/rows/"
    # Expanding: the map's row, now with a fold toggle, then its first 100 iterations.
    with django_assert_num_queries(AUTH + 4):  # the execution, operations, invocations, children
        expanded = get(client, url, parent="map", open="", shown="")
    got = rows(expanded)
    assert got[0] == ("map", 0) and "data-toggle" in expanded.split("</tr>")[0]
    items = [op_id for op_id, depth in got if depth == 1]
    assert items == [f"item-{n}" for n in range(WINDOW)]
    assert 'name="open" value="map"' in expanded and 'hx-swap-oob="true"' in expanded
    # "More" rows fetch the next iterations until none is left: each once, in order.
    skip = WINDOW
    while f"parent=map&amp;skip={skip}" in expanded:
        expanded = get(client, url, parent="map", skip=str(skip), open="map", shown=f"map:{skip}")
        items += [op_id for op_id, depth in rows(expanded) if depth == 1]
        skip += WINDOW
    assert items == [f"item-{n}" for n in range(250)]
    assert f'name="shown" value="map:{skip}"' in expanded
    # A live refresh with that state renders the same rows (and the page stays bounded otherwise).
    live = get(client, f"/executions/{execution.pk}/live/", open="map", shown="map:200")
    assert [op_id for op_id, depth in rows(live) if depth == 1] == [f"item-{n}" for n in range(200)]


@pytest.mark.django_db
def test_failures_only_finds_failures_the_page_has_not_rendered(
    cast: Cast, django_assert_num_queries: Callable[..., Any]
) -> None:
    """A failed step past the first 50 rows, 60 failed items of a folded map (one holding a failed
    step): the page renders none of them; its pager says how many failed, and "Failures only"
    fetches them all from the server, 50 at a time under each parent."""
    execution = big_execution(top=150, items=300)
    ops = Operation.objects.filter(execution=execution)
    ops.filter(operation_id__in=["step-120", "fetch-137"]).update(status="FAILED")
    ops.filter(operation_id__in=[f"item-{n}" for n in range(100, 160)]).update(status="TIMED_OUT")
    client = cast.client("viewer")
    page = get(client, f"/executions/{execution.pk}/")
    assert not {"step-120", "map"} & {op_id for op_id, _ in rows(page)}
    more = re.search(r'<tr class="timeline-more"[^>]*>.*?</tr>', page, re.S)
    assert more and "data-fail" in more.group(0) and ">2 failed</span>" in more.group(0)  # step-120, the map
    url = f"/executions/{execution.pk}/timeline/rows/"
    assert f'data-failures-url="{url}?failures=1"' in page

    with django_assert_num_queries(AUTH + 4):  # the execution, operations, invocations, children
        failures = get(client, url, failures="1")
    items = [f"item-{n}" for n in range(100, 150)]
    expected = [("step-120", 0), ("map", 0)]
    expected += [
        pair for item in items for pair in [(item, 1)] + ([("fetch-137", 2)] if item == "item-137" else [])
    ]
    assert rows(failures) == expected
    assert failures.count("<tr ") == failures.count("data-fail") == len(expected) + 1  # and a pager
    assert "data-lazy-toggle" not in failures and 'name="open"' not in failures
    assert ">10 more failed</span>" in failures
    pager = re.search(r'hx-get="([^"]*failures=1[^"]*)"', failures)
    assert pager and html.unescape(pager.group(1)) == f"{url}?failures=1&parent=map&skip=50"
    rest = get(client, url, failures="1", parent="map", skip="50")
    assert rows(rest) == [(f"item-{n}", 1) for n in range(150, 160)] and "timeline-more" not in rest

    clean = big_execution(top=3, items=3)
    assert "No operation failed." in get(client, f"/executions/{clean.pk}/timeline/rows/", failures="1")


# --- exact counts, maintained by the database ------------------------------------------------------


@pytest.fixture
def driver() -> Iterator[EngineDriver]:
    register_demos()
    with engine_driver() as running:
        yield running
    ledger.close()


def assert_counts_exact() -> dict[str, int]:
    counts = cq.execution_counts_by_status()
    assert counts == cq.execution_counts_by_status_scanned()
    return counts


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("requires_postgresql")
def test_home_counts_stay_exact_across_start_finish_redrive_delete_and_purge(
    cast: Cast, driver: EngineDriver
) -> None:
    assert assert_counts_exact() == dict.fromkeys(cq.execution_counts_by_status(), 0)
    done = finished(driver, start("order-processing", {"order_id": "c-1"}))
    payload = {"booking_id": "c-2", "max_attempts": 2, "faults": {"booking.reserve_room": 50}}
    failed = finished(driver, start("booking", payload))
    running = services.execution_start(function="order-processing", input_payload='{"order_id": "c-3"}')
    counts = assert_counts_exact()
    assert counts["FAILED"] == 1 and counts["SUCCEEDED"] >= 1 and counts["RUNNING"] >= 1
    operator.stop(Actor.cli(), running.execution.arn, "counts")
    assert_counts_exact()
    fault_switch_set("booking.reserve_room", disabled=True)
    operator.redrive(Actor.cli(), failed.arn, "counts")
    assert assert_counts_exact()["FAILED"] == 0
    assert finished(driver, failed).status == "SUCCEEDED"
    assert_counts_exact()
    operator.delete(Actor.cli(), done.arn)
    assert_counts_exact()
    driver.clock.advance(400 * 86400)  # past every function's retention
    assert services.executions_purge_expired() >= 1
    assert assert_counts_exact() == cq.execution_counts_by_status_scanned()
    # The home page shows them as they are now (no cache in between).
    client = cast.client("viewer")
    home = client.get("/").content.decode()
    for status, count in cq.execution_counts_by_status().items():
        assert re.search(rf'data-testid="count-{status}">.*?<span class="value">{count}</span>', home, re.S)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("requires_postgresql")
def test_counts_stay_exact_under_concurrent_writers() -> None:
    """Four connections start and stop executions at once, many folding the delta rows."""
    register_demos()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for index in range(40):
                started = services.execution_start(
                    function="order-processing", input_payload=f'{{"order_id": "w{n}-{index}"}}'
                ).execution
                if index % 2:
                    operator.stop(Actor.cli(), started.arn, "concurrent")
        except BaseException as error:  # reported by the test thread
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and not any(thread.is_alive() for thread in threads)
    counts = assert_counts_exact()
    assert (counts["RUNNING"], counts["STOPPED"]) == (80, 80)
    with connection.cursor() as cursor:  # folded as it went: far fewer rows than the 240 changes
        cursor.execute("SELECT COUNT(*) FROM executions_status_count")
        assert cursor.fetchone()[0] < 240
