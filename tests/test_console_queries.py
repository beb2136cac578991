"""The console's read side (executions.queries.console): filters, pages, counts, boards, detail."""

from __future__ import annotations

import datetime
import itertools
import xml.etree.ElementTree as ElementTree
from typing import Any

import pytest
from django.db import connection
from django.http import QueryDict

from executions.models import Execution, Function, HistoryEvent, Invocation, Operation
from executions.queries import console as cq
from executions.queries.history import history_page

pytestmark = pytest.mark.django_db

UTC = datetime.UTC
NOW = datetime.datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
STATUSES = ["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "STOPPED", "PAUSED"]
_serial = itertools.count(1)


# --- helpers ----------------------------------------------------------------------------------


def make_function(name: str = "orders") -> Function:
    return Function.objects.create(name=name, handler="tests.handlers:handler")


def make_execution(
    function: Function,
    *,
    status: str = "SUCCEEDED",
    started_at: datetime.datetime = NOW,
    ended_at: datetime.datetime | None = None,
    name: str | None = None,
    input_payload: str = "{}",
    result: str | None = None,
    timeout_at: datetime.datetime | None = None,
    parent: Execution | None = None,
    parent_operation_id: str = "",
) -> Execution:
    serial = next(_serial)
    name = name or f"exec-{serial}"
    return Execution.objects.create(
        function=function,
        function_version=1,
        handler="tests.handlers:handler",
        name=name,
        invocation_id=f"inv-{serial}",
        arn=(
            f"arn:aws:lambda:us-east-1:123456789012:function:{function.name}:$LATEST"
            f"/durable-execution/{name}/inv-{serial}"
        ),
        status=status,
        started_at=started_at,
        ended_at=ended_at,
        execution_timeout=3600,
        timeout_at=timeout_at,
        input_payload=input_payload,
        result=result,
        parent=parent,
        parent_operation_id=parent_operation_id,
    )


def make_op(
    execution: Execution,
    operation_id: str,
    type_: str,
    *,
    sub_type: str = "",
    parent: str = "",
    name: str = "",
    status: str = "SUCCEEDED",
    position: int | None = None,
    started_at: datetime.datetime = NOW,
    **fields: Any,
) -> Operation:
    if position is None:
        position = Operation.objects.filter(execution=execution).count() + 1
    return Operation.objects.create(
        execution=execution,
        operation_id=operation_id,
        position=position,
        parent_id=parent,
        name=name,
        type=type_,
        sub_type=sub_type,
        status=status,
        started_at=started_at,
        **fields,
    )


def minutes(n: float) -> datetime.timedelta:
    return datetime.timedelta(minutes=n)


def ordered_pks(queryset: Any = None) -> list[int]:
    queryset = queryset if queryset is not None else Execution.objects.all()
    return list(queryset.order_by("-started_at", "-id").values_list("pk", flat=True))


# --- filters: parse, validate, round trip ------------------------------------------------------


def test_from_query_parses_every_key() -> None:
    params = QueryDict(
        "status=failed&status=TIMED_OUT,running&function=orders&after=2026-01-14T10:00:00Z"
        "&before=2026-01-15&q=order-42&text=express"
    )
    filters, errors = cq.ExecutionFilters.from_query(params, now=NOW)
    assert errors == []
    assert filters.statuses == ("RUNNING", "FAILED", "TIMED_OUT")  # display order, deduplicated
    assert filters.function == "orders"
    assert filters.started_after == datetime.datetime(2026, 1, 14, 10, 0, tzinfo=UTC)
    assert filters.started_before == datetime.datetime(2026, 1, 15, 0, 0, tzinfo=UTC)  # a date: midnight UTC
    assert filters.search == "order-42"
    assert filters.text == "express"
    assert not filters.is_empty


@pytest.mark.parametrize(
    ("value", "delta"),
    [
        ("1h", datetime.timedelta(hours=1)),
        ("24h", datetime.timedelta(hours=24)),
        ("7d", datetime.timedelta(days=7)),
        ("30m", datetime.timedelta(minutes=30)),
        ("15min", datetime.timedelta(minutes=15)),
        ("2w", datetime.timedelta(weeks=2)),
        (" 90s ", datetime.timedelta(seconds=90)),
    ],
)
def test_relative_times_count_back_from_now(value: str, delta: datetime.timedelta) -> None:
    after, errors = cq.ExecutionFilters.from_query({"after": value}, now=NOW)
    before, more_errors = cq.ExecutionFilters.from_query({"before": value}, now=NOW)
    assert errors == more_errors == []
    assert after.started_after == before.started_before == NOW - delta
    assert after.after_relative == before.before_relative == value.strip().replace("min", "m")


def test_bad_values_are_reported_and_left_out() -> None:
    params = {
        "status": ["FAILED", "BOGUS", ""],
        "after": "yesterday-ish",
        "before": "999999w",
        "q": "x" * 600,
        "text": "ab",
        "function": "f" * 65,
    }
    filters, errors = cq.ExecutionFilters.from_query(params, now=NOW)
    assert filters == cq.ExecutionFilters(statuses=("FAILED",))
    assert len(errors) == 6
    joined = " ".join(errors)
    for fragment in ("'BOGUS'", "yesterday-ish", "too far back", "longer than 512", "at least 3", "too long"):
        assert fragment in joined


def test_empty_range_is_reported_but_kept() -> None:
    filters, errors = cq.ExecutionFilters.from_query({"after": "1h", "before": "2h"}, now=NOW)
    assert filters.started_after == NOW - datetime.timedelta(hours=1)
    assert filters.started_before == NOW - datetime.timedelta(hours=2)
    assert errors and "not before its end" in errors[0]


def test_naive_iso_times_are_taken_as_utc() -> None:
    filters, errors = cq.ExecutionFilters.from_query({"after": "2026-01-14 08:30"}, now=NOW)
    assert errors == []
    assert filters.started_after == datetime.datetime(2026, 1, 14, 8, 30, tzinfo=UTC)
    offset, _ = cq.ExecutionFilters.from_query({"after": "2026-01-14T10:30:00+02:00"}, now=NOW)
    assert offset.started_after == datetime.datetime(2026, 1, 14, 8, 30, tzinfo=UTC)
    # An unencoded "+" in a hand-typed URL arrives as a space.
    typed, errors = cq.ExecutionFilters.from_query(QueryDict("after=2026-01-14T10:30+02:00"), now=NOW)
    assert errors == [] and typed.started_after == offset.started_after


def test_to_query_round_trips_and_keeps_relative_times_relative() -> None:
    query = (
        "status=FAILED&status=RUNNING&function=orders&after=24h&before=2026-01-15T00:00:00%2B00:00"
        "&q=a+b&text=x%26y"
    )
    filters, errors = cq.ExecutionFilters.from_query(QueryDict(query), now=NOW)
    assert errors == []
    encoded = filters.to_query()
    assert "after=24h" in encoded  # a shared "last 24h" link stays relative
    again, errors = cq.ExecutionFilters.from_query(QueryDict(encoded), now=NOW)
    assert errors == []
    assert again == filters
    later, _ = cq.ExecutionFilters.from_query(QueryDict(encoded), now=NOW + datetime.timedelta(hours=1))
    assert later.started_after == NOW - datetime.timedelta(hours=23)


def test_to_query_overrides() -> None:
    filters, _ = cq.ExecutionFilters.from_query({"status": "FAILED", "after": "1h", "q": "x"}, now=NOW)
    assert filters.to_query(statuses=()) == "after=1h&q=x"
    assert filters.to_query(statuses=("PAUSED", "RUNNING")) == "status=RUNNING&status=PAUSED&after=1h&q=x"
    moment = datetime.datetime(2026, 1, 1, tzinfo=UTC)
    assert "after=2026-01-01T00%3A00%3A00%2B00%3A00" in filters.to_query(started_after=moment)
    assert filters.to_query(started_after=None, search="", cursor="abc") == "status=FAILED&cursor=abc"
    assert cq.ExecutionFilters().to_query() == ""
    assert filters.statuses == ("FAILED",)  # overrides never change the filters themselves


def test_is_empty() -> None:
    assert cq.ExecutionFilters().is_empty
    assert cq.ExecutionFilters.from_query({}, now=NOW)[0].is_empty
    assert not cq.ExecutionFilters(text="abc").is_empty
    assert not cq.ExecutionFilters(started_before=NOW).is_empty


def test_status_choices() -> None:
    assert [value for value, _ in cq.status_choices()] == STATUSES
    assert dict(cq.status_choices())["TIMED_OUT"] == "Timed Out"


# --- the list ----------------------------------------------------------------------------------


def test_filters_select_the_right_executions() -> None:
    orders, invoices = make_function("orders"), make_function("invoices")
    old = make_execution(orders, status="FAILED", started_at=NOW - datetime.timedelta(days=3), name="order-1")
    new = make_execution(orders, status="RUNNING", started_at=NOW - minutes(5), name="order-2",
                         input_payload='{"priority": "Express"}')  # fmt: skip
    other = make_execution(invoices, status="FAILED", started_at=NOW - minutes(30), name="inv-100_a",
                           result='"50% off"')  # fmt: skip

    def rows(**kwargs: Any) -> list[Execution]:
        return cq.execution_page(cq.ExecutionFilters(**kwargs)).rows

    assert rows() == [new, other, old]
    assert rows(statuses=("FAILED",)) == [other, old]
    assert rows(statuses=("FAILED", "RUNNING"), function="orders") == [new, old]
    assert rows(function="nope") == []
    assert rows(started_after=NOW - datetime.timedelta(hours=1)) == [new, other]
    assert rows(started_before=NOW - datetime.timedelta(hours=1)) == [old]
    assert rows(search=other.arn) == [other]
    assert rows(search=other.arn[:-1]) == []  # an ARN matches exactly
    assert rows(search="ORDER") == [new, old]  # part of a name, any case
    assert rows(search="der-") == [new, old]
    assert rows(search="in") == [other]  # under 3 characters: a prefix
    assert rows(search="0_a") == [other]  # LIKE wildcards are literal
    assert rows(search="0%a") == []
    assert rows(text="express") == [new]  # input
    assert rows(text="50% off") == [other]  # result, wildcard literal
    assert rows(text="5_%") == []
    assert rows(statuses=("__none__",)) == []  # an impossible status matches nothing


def test_list_rows_carry_their_function_in_one_query(django_assert_num_queries: Any) -> None:
    function = make_function()
    for index in range(7):
        make_execution(function, started_at=NOW - minutes(index), status=STATUSES[index % 6])
    filters = cq.ExecutionFilters(function="orders", started_after=NOW - datetime.timedelta(days=1))
    pages = {}
    for limit in (2, 50):
        with django_assert_num_queries(1):
            pages[limit] = page = cq.execution_page(filters, limit=limit)
            shown = [
                (row.function.name, row.name, row.arn, row.status, row.started_at, row.ended_at, row.error)
                for row in page.rows
            ]
        assert len(shown) == min(limit, 7)
    with django_assert_num_queries(1):
        second = cq.execution_page(filters, cursor=pages[2].next_cursor, limit=2)
        assert [row.function.name for row in second.rows] == ["orders", "orders"]


@pytest.mark.parametrize("limit", [1, 4, 5, 7])
def test_keyset_pages_never_skip_or_repeat_rows(limit: int) -> None:
    function = make_function()
    # 23 executions on 5 distinct start times: plenty of ties on started_at.
    for index in range(23):
        make_execution(function, started_at=NOW - minutes(index % 5), status=STATUSES[index % 6])
    expected = ordered_pks()
    filters = cq.ExecutionFilters()

    pages: list[cq.ExecutionPage] = [cq.execution_page(filters, limit=limit)]
    assert pages[0].prev_cursor is None
    while pages[-1].next_cursor:
        pages.append(cq.execution_page(filters, cursor=pages[-1].next_cursor, limit=limit))
    forward = [row.pk for page in pages for row in page.rows]
    assert forward == expected
    assert all(len(page.rows) == limit for page in pages[:-1])

    # And back again with prev_cursor: the same pages, in reverse.
    back = pages[-1]
    seen = [[row.pk for row in back.rows]]
    while back.prev_cursor:
        back = cq.execution_page(filters, cursor=back.prev_cursor, limit=limit)
        seen.append([row.pk for row in back.rows])
    assert seen[::-1] == [[row.pk for row in page.rows] for page in pages]
    assert back.next_cursor == pages[0].next_cursor


def test_keyset_pages_with_a_filter_and_new_rows_arriving() -> None:
    function = make_function()
    for index in range(12):
        status = "FAILED" if index % 2 else "RUNNING"
        make_execution(function, started_at=NOW - minutes(index // 3), status=status)
    filters = cq.ExecutionFilters(statuses=("FAILED",))
    first = cq.execution_page(filters, limit=4)
    # Newer executions started meanwhile do not shift the next page.
    for _ in range(3):
        make_execution(function, started_at=NOW + minutes(1), status="FAILED")
    second = cq.execution_page(filters, cursor=first.next_cursor, limit=4)
    expected = ordered_pks(Execution.objects.filter(status="FAILED", started_at__lte=NOW))
    assert [row.pk for row in first.rows + second.rows] == expected[:6]
    assert second.next_cursor is None
    # Back from the second page: the first page again, and now a page before it with the newcomers.
    back = cq.execution_page(filters, cursor=second.prev_cursor, limit=4)
    assert [row.pk for row in back.rows] == [row.pk for row in first.rows]
    top = cq.execution_page(filters, cursor=back.prev_cursor, limit=4)
    assert [row.pk for row in top.rows] == ordered_pks(Execution.objects.filter(status="FAILED"))[:3]
    assert top.prev_cursor is None
    assert [row.pk for row in cq.execution_page(filters, cursor=top.next_cursor, limit=4).rows] == [
        row.pk for row in first.rows
    ]


def test_a_cursor_past_the_end_or_unreadable() -> None:
    function = make_function()
    rows = [make_execution(function, started_at=NOW - minutes(index)) for index in range(3)]
    filters = cq.ExecutionFilters()
    last = cq.execution_page(filters, limit=2)
    end = cq.execution_page(filters, cursor=last.next_cursor, limit=2)
    assert [row.pk for row in end.rows] == [rows[2].pk]
    Execution.objects.filter(pk=rows[2].pk).delete()
    empty = cq.execution_page(filters, cursor=last.next_cursor, limit=2)
    assert empty.rows == [] and empty.next_cursor is None
    assert [row.pk for row in cq.execution_page(filters, cursor=empty.prev_cursor, limit=2).rows] == [
        rows[0].pk,
        rows[1].pk,
    ]
    for bad in ("garbage", "!!", "eyJ4IjogMX0", cq._encode_cursor(False, NOW, 1)[:-3]):
        page = cq.execution_page(filters, cursor=bad, limit=2)
        assert [row.pk for row in page.rows] == [rows[0].pk, rows[1].pk]


def test_page_size_is_clamped() -> None:
    function = make_function()
    for index in range(3):
        make_execution(function, started_at=NOW - minutes(index))
    assert len(cq.execution_page(cq.ExecutionFilters(), limit=0).rows) == 1
    assert len(cq.execution_page(cq.ExecutionFilters(), limit=10**9).rows) == 3


# --- counts ------------------------------------------------------------------------------------


def test_status_counts_apply_every_filter_but_the_status_one(django_assert_num_queries: Any) -> None:
    orders, invoices = make_function("orders"), make_function("invoices")
    for status, count in (("FAILED", 3), ("RUNNING", 2), ("PAUSED", 1)):
        for _ in range(count):
            make_execution(orders, status=status, started_at=NOW - minutes(1))
    make_execution(orders, status="FAILED", started_at=NOW - datetime.timedelta(days=2))
    make_execution(invoices, status="SUCCEEDED", started_at=NOW - minutes(1))
    filters = cq.ExecutionFilters(
        statuses=("FAILED",), function="orders", started_after=NOW - datetime.timedelta(hours=1)
    )
    with django_assert_num_queries(1):
        counts = cq.status_counts(filters)
    assert counts == {"RUNNING": 2, "SUCCEEDED": 0, "FAILED": 3, "TIMED_OUT": 0, "STOPPED": 0, "PAUSED": 1}
    assert cq.status_counts(cq.ExecutionFilters())["FAILED"] == 4


def test_status_counts_are_capped_under_a_filter_and_exact_without(
    monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    function = make_function()
    for index in range(5):
        make_execution(function, status="FAILED" if index < 4 else "RUNNING", started_at=NOW - minutes(index))
    monkeypatch.setattr(cq, "COUNT_CAP", 3)
    counts = cq.status_counts(cq.ExecutionFilters(function=function.name))
    assert counts["FAILED"] == "3+"
    assert counts["RUNNING"] == 1
    assert counts["PAUSED"] == 0
    # The whole list (a status filter at most): the maintained counts, exact past the cap.
    with django_assert_num_queries(1):
        whole = cq.status_counts(cq.ExecutionFilters(statuses=("RUNNING",)))
    assert whole == {"RUNNING": 1, "SUCCEEDED": 0, "FAILED": 4, "TIMED_OUT": 0, "STOPPED": 0, "PAUSED": 0}


def test_search_counts_in_one_pass_exact_under_the_cap(
    monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    function = make_function()
    for index in range(6):
        make_execution(function, status="FAILED" if index % 2 else "SUCCEEDED",
                       input_payload='{"tier": "express"}' if index < 5 else "{}")  # fmt: skip
    filters = cq.ExecutionFilters(text="EXPRESS", statuses=("FAILED",))
    with django_assert_num_queries(1):
        counts = cq.status_counts(filters)
    assert counts == {"RUNNING": 0, "SUCCEEDED": 3, "FAILED": 2, "TIMED_OUT": 0, "STOPPED": 0, "PAUSED": 0}
    # Past the cap every count is a lower bound.
    monkeypatch.setattr(cq, "SEARCH_COUNT_CAP", 3)
    capped = cq.status_counts(filters)
    assert set(capped.values()) <= {"0+", "1+", "2+", "3+", "4+"}
    assert sum(int(str(value).rstrip("+")) for value in capped.values()) == 4
    # An exact ARN counts per status like any index filter.
    execution = Execution.objects.first()
    assert cq.status_counts(cq.ExecutionFilters(search=execution.arn))[execution.status] == 1


def test_execution_counts_by_status(django_assert_num_queries: Any) -> None:
    function = make_function()
    for status in ("FAILED", "FAILED", "RUNNING"):
        make_execution(function, status=status)
    with django_assert_num_queries(1):
        counts = cq.execution_counts_by_status()
    assert counts == {"RUNNING": 1, "SUCCEEDED": 0, "FAILED": 2, "TIMED_OUT": 0, "STOPPED": 0, "PAUSED": 0}


# --- activity --------------------------------------------------------------------------------------


def test_activity_buckets(django_assert_num_queries: Any) -> None:
    function = make_function()
    origin = NOW - datetime.timedelta(hours=1)
    make_execution(function, status="RUNNING", started_at=origin)  # first bucket, on its edge
    for status, start, end in (
        ("SUCCEEDED", 1, 16),
        ("FAILED", 2, 31),
        ("TIMED_OUT", -5, 59),  # started before the window, ended in it
        ("STOPPED", 50, 55),  # not a failure
        ("SUCCEEDED", -30, -1),  # all before the window
    ):
        started, ended = origin + minutes(start), origin + minutes(end)
        make_execution(function, status=status, started_at=started, ended_at=ended)
    make_execution(function, status="RUNNING", started_at=NOW)  # the window ends before now
    with django_assert_num_queries(2):
        buckets = cq.activity(NOW, window=datetime.timedelta(hours=1), buckets=4)
    assert [bucket.start for bucket in buckets] == [origin + minutes(15 * index) for index in range(4)]
    counts = [(b.started, b.succeeded, b.failed) for b in buckets]
    assert counts == [(3, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1)]
    with pytest.raises(ValueError):
        cq.activity(NOW, window=datetime.timedelta(hours=1), buckets=0)


def test_activity_of_an_empty_day() -> None:
    buckets = cq.activity(NOW, window=datetime.timedelta(days=1), buckets=24)
    assert len(buckets) == 24
    assert all((b.started, b.succeeded, b.failed) == (0, 0, 0) for b in buckets)
    assert buckets[-1].start == NOW - datetime.timedelta(hours=1)


def test_activity_svg_is_accessible_and_escaped() -> None:
    buckets = [
        cq.ActivityBucket(start=NOW + minutes(index), started=index * 3, succeeded=index, failed=index % 2)
        for index in range(10)
    ]
    title = "Last <hour> & \"more\" 'quoted' <script>alert(1)</script>"
    svg = cq.activity_svg(buckets, title=title, width=320, height=120)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    root = ElementTree.fromstring(svg)  # well-formed XML
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg"
    assert root.get("role") == "img"
    assert root.get("width") == "320" and root.get("viewBox") == "0 0 320 120"
    title_el = root.find(f"{ns}title")
    desc_el = root.find(f"{ns}desc")
    assert title_el is not None and title_el.text == title
    assert desc_el is not None and "135 started, 45 succeeded and 5 failed" in desc_el.text
    assert root.get("aria-labelledby") == f"{title_el.get('id')} {desc_el.get('id')}"
    groups = root.findall(f"{ns}g")
    assert len(groups) == 10
    assert all(len(group.findall(f"{ns}rect")) == 3 for group in groups)
    assert groups[9].find(f"{ns}title").text.endswith("27 started, 9 succeeded, 1 failed")
    labels = [text.text for text in root.iter(f"{ns}text")]
    assert "Started" in labels and "Succeeded" in labels and "Failed" in labels
    assert "50" in labels and "0" in labels  # y axis: the peak rounded up, and zero
    assert "12:00" in labels and "12:09 UTC" in labels  # x axis: first and last bucket, and its zone
    assert cq.activity_svg(buckets, title=title) == cq.activity_svg(buckets, title=title)  # pure


def test_activity_svg_without_data() -> None:
    svg = cq.activity_svg([], title="Nothing")
    root = ElementTree.fromstring(svg)
    assert root.find("{http://www.w3.org/2000/svg}title").text == "Nothing"
    zeros = [cq.ActivityBucket(start=NOW, started=0, succeeded=0, failed=0)] * 3
    ElementTree.fromstring(cq.activity_svg(zeros, title="Quiet"))


# --- waiting on people -------------------------------------------------------------------------


def test_waiting_on_people(django_assert_num_queries: Any) -> None:
    orders, docs = make_function("orders"), make_function("docs")
    running = make_execution(orders, status="RUNNING", started_at=NOW - datetime.timedelta(hours=3),
                             timeout_at=NOW + datetime.timedelta(hours=5))  # fmt: skip
    paused = make_execution(docs, status="PAUSED", started_at=NOW - datetime.timedelta(hours=2))
    finished = make_execution(docs, status="STOPPED", started_at=NOW - datetime.timedelta(hours=4))
    # wait_for_callback: the group context carries the name people know.
    make_op(running, "group", "CONTEXT", sub_type="WaitForCallback", name="approve-invoice", status="STARTED",
            started_at=NOW - datetime.timedelta(hours=2))  # fmt: skip
    grouped = make_op(running, "cb-1", "CALLBACK", sub_type="Callback", parent="group",
                      name="approve-invoice create callback id", status="STARTED",
                      started_at=NOW - datetime.timedelta(hours=2),
                      callback_timeout_at=NOW + datetime.timedelta(hours=1),
                      callback_heartbeat_at=NOW + datetime.timedelta(minutes=10))  # fmt: skip
    bare = make_op(paused, "cb-2", "CALLBACK", sub_type="Callback", name="verify-email", status="STARTED",
                   started_at=NOW - datetime.timedelta(minutes=30))  # fmt: skip
    make_op(running, "cb-done", "CALLBACK", name="done", status="SUCCEEDED", started_at=NOW - minutes(90))
    make_op(finished, "cb-orphan", "CALLBACK", name="orphan", status="STARTED",
            started_at=NOW - datetime.timedelta(hours=4))  # fmt: skip
    # A callback inside a plain child context keeps its own name.
    make_op(running, "child", "CONTEXT", sub_type="RunInChildContext", name="child", status="STARTED",
            started_at=NOW - minutes(20))  # fmt: skip
    nested = make_op(running, "cb-3", "CALLBACK", parent="child", name="nested-cb", status="STARTED",
                     started_at=NOW - minutes(10))  # fmt: skip

    with django_assert_num_queries(1):
        board = cq.waiting_on_people(now=NOW)
        shown = [
            (item.execution.function.name, item.execution.arn, item.operation.operation_id) for item in board
        ]
    assert [item.operation.pk for item in board] == [grouped.pk, bare.pk, nested.pk]  # longest waiting first
    assert [name for _, _, name in shown] == ["cb-1", "cb-2", "cb-3"]
    first, second, third = board
    assert (first.name, first.execution) == ("approve-invoice", running)
    assert first.age == datetime.timedelta(hours=2)
    assert first.time_left == datetime.timedelta(minutes=10)  # the heartbeat is due first
    assert (second.name, second.execution.function.name) == ("verify-email", "docs")
    assert second.age == datetime.timedelta(minutes=30)
    assert second.time_left is None  # no callback timeout, no execution timeout
    assert third.name == "nested-cb"
    assert third.time_left == datetime.timedelta(hours=5)  # the execution's own timeout
    assert [item.operation.pk for item in cq.waiting_on_people(now=NOW, limit=1)] == [grouped.pk]
    overdue = cq.waiting_on_people(now=NOW + datetime.timedelta(hours=1))
    assert overdue[0].time_left == -datetime.timedelta(minutes=50)


# --- functions -----------------------------------------------------------------------------------


def test_function_stats(django_assert_num_queries: Any) -> None:
    orders, docs, idle = make_function("orders"), make_function("docs"), make_function("idle")
    for status in ("SUCCEEDED", "FAILED", "TIMED_OUT", "RUNNING"):
        make_execution(orders, status=status, started_at=NOW - minutes(len(status)))
    make_execution(docs, status="SUCCEEDED", started_at=NOW - datetime.timedelta(days=1))
    with django_assert_num_queries(1):
        stats = cq.function_stats([orders, idle])
    assert set(stats) == {orders.pk, idle.pk}
    assert stats[orders.pk] == cq.FunctionStats(
        executions=4, failed=2, failure_rate=0.5, last_run=NOW - minutes(6)
    )
    assert stats[idle.pk] == cq.FunctionStats(executions=0, failed=0, failure_rate=None, last_run=None)
    with django_assert_num_queries(2):
        every = cq.function_stats()
    assert set(every) == {orders.pk, docs.pk, idle.pk}
    assert every[docs.pk].failure_rate == 0.0
    assert every[docs.pk].last_run == NOW - datetime.timedelta(days=1)


# --- detail --------------------------------------------------------------------------------------


def build_tree_execution(extra_steps: int = 0) -> tuple[Execution, Execution]:
    orders, stock = make_function("orders"), make_function("stock")
    execution = make_execution(orders, status="RUNNING", name="tree")
    make_op(execution, execution.invocation_id, "EXECUTION", name="tree", status="STARTED")
    make_op(execution, "s1", "STEP", sub_type="Step", name="first", attempt=2, result='{"ok": 1}')
    make_op(execution, "par", "CONTEXT", sub_type="Parallel", name="fan-out")
    make_op(execution, "b0", "CONTEXT", sub_type="ParallelBranch", parent="par", name="parallel-branch-0")
    make_op(execution, "b0s", "STEP", sub_type="Step", parent="b0", name="p-a")
    make_op(execution, "b1", "CONTEXT", sub_type="ParallelBranch", parent="par", name="parallel-branch-1")
    make_op(execution, "b1s", "STEP", sub_type="Step", parent="b1", name="p-b")
    make_op(execution, "map", "CONTEXT", sub_type="Map", name="items")
    for item in range(2):
        make_op(execution, f"m{item}", "CONTEXT", sub_type="MapIteration", parent="map",
                name=f"map-item-{item}")  # fmt: skip
        make_op(execution, f"m{item}s", "STEP", sub_type="Step", parent=f"m{item}", name=f"item-{item}")
    make_op(execution, "inv", "CHAINED_INVOKE", sub_type="ChainedInvoke", name="reserve",
            invoke_function_name="stock")  # fmt: skip
    make_op(execution, "wfc", "CONTEXT", sub_type="WaitForCallback", name="approve", status="STARTED")
    make_op(execution, "wfc-cb", "CALLBACK", sub_type="Callback", parent="wfc",
            name="approve create callback id", status="STARTED")  # fmt: skip
    make_op(execution, "wfc-sub", "STEP", sub_type="Step", parent="wfc", name="approve submitter")
    make_op(execution, "lost", "STEP", sub_type="Step", parent="no-such-parent", name="orphan")
    for index in range(extra_steps):
        make_op(execution, f"extra-{index}", "STEP", sub_type="Step", parent="b1", name=f"extra-{index}")
    child = make_execution(stock, parent=execution, parent_operation_id="inv", name="tree-child")
    for event_id in range(1, 4 + extra_steps):
        HistoryEvent.objects.create(
            execution=execution, event_id=event_id, event_type="StepStarted", operation_id="s1",
            timestamp=NOW, details={"Result": {"Payload": '{"ok": 1}', "Truncated": False}},
        )  # fmt: skip
    for number in (1, 2):
        Invocation.objects.create(execution=execution, number=number, request_id=f"r{number}", started_at=NOW)
    return execution, child


def test_detail_tree_nests_parallel_map_and_callback_groups() -> None:
    execution, child = build_tree_execution()
    data = cq.execution_detail_data(execution)
    assert data.execution is execution
    assert data.execution_operation is not None and data.execution_operation.type == "EXECUTION"

    def shape(nodes: list[cq.OperationNode]) -> list[Any]:
        return [(node.operation.operation_id, shape(node.children)) if node.children else
                node.operation.operation_id for node in nodes]  # fmt: skip

    assert shape(data.operations) == [
        "s1",
        ("par", [("b0", ["b0s"]), ("b1", ["b1s"])]),
        ("map", [("m0", ["m0s"]), ("m1", ["m1s"])]),
        "inv",
        ("wfc", ["wfc-cb", "wfc-sub"]),
        "lost",  # its parent is unknown: shown at the top
    ]
    flat = data.flattened()
    assert [node.operation.operation_id for node in flat][:5] == ["s1", "par", "b0", "b0s", "b1"]
    assert {node.operation.operation_id: node.depth for node in flat}["b1s"] == 2
    assert data.nodes["m1s"].depth == 2 and data.nodes["map"].depth == 0
    assert data.nodes["s1"].operation.attempt == 2
    assert data.children == {"inv": child}
    assert data.children["inv"].function.name == "stock"
    history = history_page(execution)  # the history is read a page at a time
    assert [event.event_id for event in history.events] == [1, 2, 3]
    assert history.events[0].details == {"Result": {"Payload": '{"ok": 1}', "Truncated": False}}
    assert history.events[0].timestamp == NOW
    assert [invocation.number for invocation in data.invocations] == [1, 2]
    op = data.nodes["wfc-cb"].operation
    assert op.started_at == NOW and op.started_at.utcoffset() == datetime.timedelta(0)
    assert op.error is None and data.nodes["s1"].operation.result == '{"ok": 1}'


@pytest.mark.parametrize("extra", [0, 40])
def test_detail_uses_three_queries_whatever_the_size(extra: int, django_assert_num_queries: Any) -> None:
    execution, _ = build_tree_execution(extra)
    execution = Execution.objects.select_related("function").get(pk=execution.pk)
    with django_assert_num_queries(3):  # operations, invocations, child executions
        data = cq.execution_detail_data(execution)
        for node in data.flattened():
            node.operation.execution_id  # noqa: B018 - reading what the page shows costs nothing
        for child in data.children.values():
            child.function.name  # noqa: B018
    assert len(data.nodes) == 16 + extra


def test_detail_of_an_execution_without_operations() -> None:
    execution = make_execution(make_function())
    data = cq.execution_detail_data(execution)
    assert (data.execution_operation, data.operations, data.children) == (None, [], {})
    assert history_page(execution).events == []


# --- schema ----------------------------------------------------------------------------------------


def test_console_indexes_exist_on_postgresql(requires_postgresql: None) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE indexname LIKE %s", ["execution_%"])
        indexes = dict(cursor.fetchall())
        cursor.execute("SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'")
        assert cursor.fetchone() == ("pg_trgm",)
    for name in ("name", "input", "result"):
        assert "gin_trgm_ops" in indexes[f"execution_{name}_trgm_idx"]
    assert "started_at DESC, id DESC" in indexes["execution_started_id_idx"]


def test_the_functions_pages_show_the_failure_rate_as_a_percentage(client: Any) -> None:
    """3 failed of 18 is 16.7%, not the fraction 0.17 with a percent sign ("0.2%")."""
    from django.contrib.auth.models import User

    from executions.console.formatting import percent

    orders = make_function("orders")
    for index in range(18):
        status = "FAILED" if index < 3 else "SUCCEEDED"
        make_execution(orders, status=status, started_at=NOW - minutes(index + 1))
    client.force_login(User.objects.create_superuser("admin-rate", "a@example.com", "pw-not-used-1"))
    assert "16.7%" in client.get("/functions/").content.decode()
    assert "16.7%" in client.get("/functions/orders/").content.decode()
    assert (percent(3 / 18), percent(0.0), percent(None)) == ("16.7%", "0.0%", "")
