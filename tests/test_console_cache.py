"""Cached counts on the home page and the execution list, and the rows built in Python.

Counts, charts and the waiting board come from Django's cache (``executions.queries.cache``):
fresh for FRESH_SECONDS on the engine clock, then shown while a background thread computes
them again, computed by the view past STALE_SECONDS; a page that showed values computed
before it asks to be fetched again. List rows are read on every view.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client, override_settings

from executions.console import rows
from executions.engine import clock
from executions.models import Execution, Operation
from executions.queries import cache as console_cache
from executions.queries import console as cq
from executions.queries.cache import FRESH_SECONDS, STALE_SECONDS, Cached
from executions.queries.console import WaitingCallback
from tests.console_support import Cast, make_cast, register_demos
from tests.engine_driver import TestClock
from tests.servers import free_port
from tests.test_console_query_counts import AUTH, seed_running

pytestmark = pytest.mark.django_db


@pytest.fixture
def cast(db: None) -> Cast:
    return make_cast()


@pytest.fixture
def test_clock() -> Iterator[TestClock]:
    fixed = TestClock(datetime.datetime(2026, 3, 2, 9, 0, tzinfo=datetime.UTC))
    clock.set_clock(fixed.now)
    yield fixed
    clock.set_clock(None)


def home_count(html: str, status: str) -> int:
    found = re.search(rf'data-testid="count-{status}">.*?<span class="value">(\d+)</span>', html, re.DOTALL)
    assert found, f"no {status} count on the page"
    return int(found.group(1))


def chip_count(html: str, status: str) -> str:
    found = re.search(rf'data-testid="chip-count-{status}">([^<]*)</span>', html)
    assert found, f"no {status} chip"
    return found.group(1)


def refresh_ms(html: str) -> int | None:
    found = re.search(r'data-refresh-ms="(\d+)"', html)
    return int(found.group(1)) if found else None


def get(client: Client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, path
    return response.content.decode()


def park_on_callback(execution: Execution, started_at: datetime.datetime) -> Operation:
    return Operation.objects.create(
        execution=execution,
        operation_id=f"cb-{execution.pk}",
        position=99,
        type="CALLBACK",
        sub_type="Callback",
        name=f"approve-{execution.pk}",
        status="STARTED",
        started_at=started_at,
    )


def test_home_serves_cached_counts_and_board_while_fresh(
    cast: Cast, test_clock: TestClock, django_assert_num_queries: Any
) -> None:
    register_demos()
    first, second = seed_running(2)
    park_on_callback(first, test_clock.now() - datetime.timedelta(minutes=2))
    client = cast.client("operator")
    with django_assert_num_queries(AUTH + 6):  # counts, the board, two charts of two queries
        computed = get(client, "/")
    assert home_count(computed, "RUNNING") == 2
    assert computed.count('data-testid="waiting-row"') == 1
    assert refresh_ms(computed) is None  # computed for this view: nothing to fetch again

    (third,) = seed_running(1)
    park_on_callback(second, test_clock.now())
    test_clock.advance(FRESH_SECONDS - 1)
    with django_assert_num_queries(AUTH + 1):  # the counts (maintained, exact); the rest cached
        cached = get(client, "/")
    assert home_count(cached, "RUNNING") == 3  # the counts are exact on every view
    assert cached.count('data-testid="waiting-row"') == 1
    assert "2 min 4 s" in cached  # the board's ages are as of this view
    assert refresh_ms(cached) == 1100  # fetch again just after they stop being fresh
    assert f"?counts_since={test_clock.now().timestamp():.3f}" in cached

    park_on_callback(third, test_clock.now())
    test_clock.advance(STALE_SECONDS)  # too old to show: the view computes
    with django_assert_num_queries(AUTH + 6):  # three board rows cost no more than one
        fresh = get(client, "/")
    assert home_count(fresh, "RUNNING") == 3
    assert fresh.count('data-testid="waiting-row"') == 3
    assert refresh_ms(fresh) is None


@pytest.mark.django_db(transaction=True)  # the refresh reads on a connection of its own
def test_stale_counts_are_shown_while_a_background_refresh_replaces_them(
    cast: Cast, test_clock: TestClock, django_assert_num_queries: Any
) -> None:
    register_demos()
    seed_running(2)
    client = cast.client("operator")
    viewed_at = test_clock.now()
    assert home_count(get(client, "/"), "RUNNING") == 2

    seed_running(1)
    test_clock.advance(FRESH_SECONDS + 1)
    with django_assert_num_queries(AUTH + 1):  # the view waits for no chart or board, only the counts
        stale = get(client, "/")
    assert home_count(stale, "RUNNING") == 3  # the counts are exact on every view
    assert refresh_ms(stale) == 1100  # a refresh is under way: look again in a second
    console_cache.wait_for_refreshes()

    with django_assert_num_queries(AUTH + 1):
        refreshed = get(client, "/")
    assert home_count(refreshed, "RUNNING") == 3
    assert refresh_ms(refreshed) is None  # computed at this very (test clock) moment
    # The page that showed the stale counts fetches itself with the moment it was shown:
    # counts computed since then are what it waited for, so it stops there.
    refetch = get(client, f"/?counts_since={(viewed_at + datetime.timedelta(seconds=1)).timestamp()}")
    assert home_count(refetch, "RUNNING") == 3 and refresh_ms(refetch) is None


def test_list_caches_chip_counts_per_filter_but_never_rows(
    cast: Cast, test_clock: TestClock, django_assert_num_queries: Any
) -> None:
    register_demos()
    seed_running(2)
    client = cast.client("operator")
    # rows, their current steps, chip counts, the function select
    with django_assert_num_queries(AUTH + 4):
        first = get(client, "/executions/")
    assert chip_count(first, "RUNNING") == "2"

    seed_running(1)
    test_clock.advance(1)
    # The status filter does not change the chips' counts: the same cache entry serves it.
    with django_assert_num_queries(AUTH + 2):  # rows and their current steps
        by_status = get(client, "/executions/?status=RUNNING")
    assert chip_count(by_status, "RUNNING") == "2"
    assert by_status.count('data-testid="execution-row"') == 3  # rows are read on every view
    assert refresh_ms(by_status) == (FRESH_SECONDS - 1) * 1000 + 100
    assert 'id="execution-results-refresh"' in by_status
    # Another filter has counts of its own (the function select is the same for all).
    with django_assert_num_queries(AUTH + 3):
        by_function = get(client, "/executions/?function=order-processing")
    assert chip_count(by_function, "RUNNING") == "3"

    test_clock.advance(STALE_SECONDS)
    with django_assert_num_queries(AUTH + 4):
        expired = get(client, "/executions/?status=RUNNING")
    assert chip_count(expired, "RUNNING") == "3"
    assert refresh_ms(expired) is None


def test_a_later_page_of_the_list_never_fetches_itself_again(cast: Cast, test_clock: TestClock) -> None:
    register_demos()
    seed_running(3)
    client = cast.client("operator")
    get(client, "/executions/")  # fills the cache
    test_clock.advance(1)
    assert refresh_ms(get(client, "/executions/")) is not None
    page = cq.execution_page(cq.ExecutionFilters(), limit=1)
    second = get(client, f"/executions/?cursor={page.next_cursor}")
    # A refetch of the region has no cursor: it would jump back to the first page.
    assert refresh_ms(second) is None


def test_a_refetch_keeps_the_address_bar_as_it_is(cast: Cast, test_clock: TestClock) -> None:
    register_demos()
    seed_running(1)
    client = cast.client("operator")
    refetch = client.get(
        "/executions/?status=RUNNING&counts_since=1",
        HTTP_HX_REQUEST="true",
        HTTP_HX_TRIGGER="execution-results-refresh",
    )
    assert refetch.status_code == 200 and "HX-Push-Url" not in refetch.headers
    changed = client.get(
        "/executions/?status=RUNNING", HTTP_HX_REQUEST="true", HTTP_HX_TRIGGER="execution-filters"
    )
    assert changed.headers["HX-Push-Url"] == "/executions/?status=RUNNING"


def test_an_unreachable_cache_is_skipped(cast: Cast, django_assert_num_queries: Any) -> None:
    register_demos()
    seed_running(1)
    client = cast.client("operator")
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    backend = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": closed}}
    with override_settings(CACHES=backend):
        for _ in range(2):
            with django_assert_num_queries(AUTH + 6):  # computed each time, as without a cache
                page = get(client, "/")
            assert home_count(page, "RUNNING") == 1


def test_cached_values_by_age(test_clock: TestClock) -> None:
    computed_for: list[datetime.datetime] = []

    def compute(moment: datetime.datetime) -> int:
        computed_for.append(moment)
        return len(computed_for)

    start = test_clock.now()
    first = console_cache.cached("probe", compute)
    assert (first.value, first.computed_at) == (1, start)
    test_clock.advance(FRESH_SECONDS - 1)
    assert console_cache.cached("probe", compute) == first  # fresh
    test_clock.advance(2)
    assert console_cache.cached("probe", compute) == first  # stale: shown, refreshed meanwhile
    console_cache.wait_for_refreshes()
    refreshed = console_cache.cached("probe", compute)
    assert (refreshed.value, refreshed.computed_at) == (2, test_clock.now())
    assert computed_for == [start, test_clock.now()]  # the refresh computed for its own moment

    test_clock.advance(STALE_SECONDS)
    assert console_cache.cached("probe", compute).value == 3  # too old: computed by the caller
    test_clock.current -= datetime.timedelta(seconds=10)  # a clock set back: not trusted
    assert console_cache.cached("probe", compute).value == 4
    console_cache.forget()
    assert console_cache.cached("probe", compute).value == 5


def test_when_a_page_fetches_itself_again() -> None:
    now = datetime.datetime(2026, 3, 2, 9, 0, tzinfo=datetime.UTC)

    def entry(seconds_ago: float) -> Cached[int]:
        return Cached(0, now - datetime.timedelta(seconds=seconds_ago))

    assert console_cache.refresh_after_ms([entry(0)], now=now) is None
    assert console_cache.refresh_after_ms([entry(0), entry(2)], now=now) == (FRESH_SECONDS - 2) * 1000 + 100
    assert console_cache.refresh_after_ms([entry(FRESH_SECONDS + 3)], now=now) == 1100
    since = now - datetime.timedelta(seconds=3)
    assert console_cache.refresh_after_ms([entry(1)], now=now, since=since) is None
    assert console_cache.refresh_after_ms([entry(4)], now=now, since=since) == 1100
    assert console_cache.since_from_query("not a number", now) is None
    assert console_cache.since_from_query(str(now.timestamp() + 60), now) == now  # never later than now


# --- rows built in Python ----------------------------------------------------------------------


def test_list_row_links_and_escapes(cast: Cast) -> None:
    register_demos()
    running, stopped = seed_running(2)
    Execution.objects.filter(pk=running.pk).update(name='<b>"bold"</b>')
    ended = stopped.started_at + datetime.timedelta(seconds=90)
    Execution.objects.filter(pk=stopped.pk).update(status="STOPPED", ended_at=ended)
    by_pk = Execution.objects.select_related("function").in_bulk([running.pk, stopped.pk])

    html = rows.execution_row(by_pk[running.pk])
    assert "<b>" not in html and "&lt;b&gt;&quot;bold&quot;&lt;/b&gt;" in html
    assert f'href="/executions/{running.pk}/"' in html
    assert 'href="/executions/?function=order-processing">order-processing</a>' in html
    assert 'data-status="RUNNING"' in html and '<span class="muted">' in html  # still running
    done = rows.execution_row(by_pk[stopped.pk])
    assert 'class="badge st-stopped"' in done
    assert "1 min 30 s" in done
    assert ended.strftime("%H:%M:%S") in done


def test_waiting_row_offers_completion_only_to_those_who_may(cast: Cast) -> None:
    register_demos()
    (execution,) = seed_running(1)
    execution = Execution.objects.select_related("function").get(pk=execution.pk)
    op = Operation(operation_id="3f2a9c", execution=execution)
    now = datetime.datetime(2026, 3, 2, 9, 0, tzinfo=datetime.UTC)

    def row(time_left: datetime.timedelta | None, *, can_complete: bool) -> str:
        item = WaitingCallback(execution, op, "approve <it>", datetime.timedelta(minutes=3), time_left)
        return rows.waiting_row(item, now, can_complete=can_complete)

    allowed = row(datetime.timedelta(minutes=10), can_complete=True)
    assert f'href="/executions/{execution.pk}/callbacks/3f2a9c/">Complete…</a>' in allowed
    assert "approve &lt;it&gt;" in allowed
    assert 'datetime="2026-03-02T09:10:00+00:00" title="2026-03-02 09:10:00 UTC">in 10 min</time>' in allowed
    assert "Complete" not in row(datetime.timedelta(minutes=10), can_complete=False)
    assert "overdue" in row(datetime.timedelta(seconds=-1), can_complete=False)
    assert "no timeout" in row(None, can_complete=False)
