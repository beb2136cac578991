"""Read-side queries of the operations console: lists, counts, charts, boards, detail.

Selectors: the filters themselves
are ``ExecutionQuerySet`` vocabulary (``executions.models``); this module
composes them, adds ``select_related`` and keeps every page to a fixed, small
number of queries whatever the row count.

Performance notes (PostgreSQL, 1,000,000 executions; figures in README.md,
"Console performance", measured by ``bench/console.py``):

- The list pages by keyset on (started_at, id), newest first, never by OFFSET,
  so page 1,000 costs what page 1 costs, and rows started meanwhile cannot shift
  a page. Every filter has an index that returns rows in that order, or
  selects few enough rows to sort (see ``Execution.Meta.indexes``).
- Status chip counts of the whole list (no filter but the status one) are the
  exact counts the database maintains (below). Under any other filter they are
  capped. Without a name or text search, each status is
  counted with ``LIMIT COUNT_CAP + 1`` in one statement, so a count reads at
  most ``COUNT_CAP`` index entries instead of every matching row, and a count
  past the cap reads ``"10,000+"`` (a string). With a name or text search the
  search is evaluated once for all statuses: the first ``SEARCH_COUNT_CAP + 1``
  matches are grouped by status; exact up to the cap, past it every count is a
  lower bound (``"1,748+"``). Exact counts of a million rows would cost a scan
  of them per request (``execution_counts_by_status_scanned``: ~300 ms here).
- The home page's exact counts per status are maintained by the database in the
  transaction of every change (``execution_counts_by_status``), so a view reads
  a few rows instead of counting a million.
- What every view of the home page or the list would otherwise compute again
  (chip counts, charts, the waiting board, the function names)
  goes through ``executions.queries.cache`` (the ``wanted_*`` functions): one
  computation serves every viewer for a few seconds and is refreshed off the
  request path, so a view costs the same however many executions run.
- List rows do not load the large columns (``LIST_DEFERRED_FIELDS``: input,
  result, idempotency bookkeeping); reading one of them on a list row costs a
  query per row. The detail page loads full rows, thousands of them without
  the ORM's per-row overhead (``_all_rows``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import gc
import hashlib
import html
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.models import Count, Func, IntegerField, Max, Q, QuerySet
from django.db.models.base import ModelState
from django.http import QueryDict
from django.utils import timezone

from executions.engine import clock
from executions.models import (
    Execution,
    ExecutionQuerySet,
    ExecutionStatus,
    Function,
    Invocation,
    Operation,
)
from executions.queries.cache import Cached, Wanted
from executions.queries.current_step import wait_for_callback_group_name
from executions.queries.text_search import TRIGRAM_MIN_LENGTH
from executions.vocabulary import ACTIVE_EXECUTION_STATUSES, OperationStatus, OperationType

M = TypeVar("M", bound=models.Model)

COUNT_CAP = 10_000
SEARCH_COUNT_CAP = 2_000
MAX_PAGE_SIZE = 1000
MAX_SEARCH_LENGTH = 512  # the longest ARN the model stores
FAILED_STATUSES = (ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT)

# Columns a list row never shows; kept out of list queries (reading one costs a query).
LIST_DEFERRED_FIELDS = (
    "input_payload",
    "result",
    "last_response",
    "last_inbound_token",
    "updated_operation_ids",
)

_RELATIVE_TIME = re.compile(r"^\s*(\d{1,6})\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
_OFFSET_AS_SPACE = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")
_RELATIVE_UNITS = {"s": "seconds", "m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def status_choices() -> list[tuple[str, str]]:
    """(value, label) of every execution status, in display order, for chips and selects."""
    return [(str(value), str(label)) for value, label in ExecutionStatus.choices]


# --- filters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutionFilters:
    """What the execution list shows; every field travels in the query string.

    Query keys: ``status`` (repeatable, or comma-separated), ``function``,
    ``after`` and ``before`` (ISO 8601, or relative to now: ``30m``, ``1h``,
    ``24h``, ``7d``, ``2w``), ``q`` (an exact ARN, or part of a name) and
    ``text`` (part of the input or result, at least 3 characters).

    ``after_relative``/``before_relative`` keep a relative time as typed, so a
    shared "last 24h" link stays relative; ``started_after``/``started_before``
    hold the moment it meant when parsed.
    """

    statuses: tuple[str, ...] = ()
    function: str | None = None
    started_after: datetime.datetime | None = None
    started_before: datetime.datetime | None = None
    search: str = ""
    text: str = ""
    after_relative: str = ""
    before_relative: str = ""

    @classmethod
    def from_query(
        cls, params: Mapping[str, Any] | QueryDict, *, now: datetime.datetime | None = None
    ) -> tuple[ExecutionFilters, list[str]]:
        """Parse a query string; bad values are left out and reported, never raised.

        ``now`` anchors relative times (default: the engine clock).
        """
        errors: list[str] = []
        now = now or clock.now()

        statuses: list[str] = []
        valid = {value for value, _ in ExecutionStatus.choices}
        for raw in _values(params, "status"):
            for part in raw.split(","):
                value = part.strip().upper()
                if not value:
                    continue
                if value in valid:
                    if value not in statuses:
                        statuses.append(value)
                else:
                    errors.append(f"Unknown status {part.strip()!r}; it was ignored.")

        function = (_value(params, "function") or "").strip() or None
        if function and len(function) > Function._meta.get_field("name").max_length:
            errors.append("The function name is too long; the function filter was ignored.")
            function = None

        after, after_relative = _parse_moment(_value(params, "after"), "after", now, errors)
        before, before_relative = _parse_moment(_value(params, "before"), "before", now, errors)
        if after and before and after >= before:
            errors.append("The start of the time range is not before its end; nothing can match.")

        search = (_value(params, "q") or "").strip()
        if len(search) > MAX_SEARCH_LENGTH:
            errors.append(f"The search is longer than {MAX_SEARCH_LENGTH} characters; it was ignored.")
            search = ""

        text = (_value(params, "text") or "").strip()
        if text and len(text) < TRIGRAM_MIN_LENGTH:
            errors.append(f"Text search needs at least {TRIGRAM_MIN_LENGTH} characters; it was ignored.")
            text = ""
        elif len(text) > MAX_SEARCH_LENGTH:
            errors.append(f"The text search is longer than {MAX_SEARCH_LENGTH} characters; it was ignored.")
            text = ""

        filters = cls(
            statuses=_canonical_statuses(statuses),
            function=function,
            started_after=after,
            started_before=before,
            search=search,
            text=text,
            after_relative=after_relative,
            before_relative=before_relative,
        )
        return filters, errors

    def to_query(self, **overrides: Any) -> str:
        """The urlencoded query string (no leading ``?``) of these filters with ``overrides``.

        Overrides are field names (``statuses=("FAILED",)``, ``function=None``), plus
        ``cursor=`` for a page link. Replacing ``started_after``/``started_before``
        drops the matching relative text. Keys with empty values are left out.
        """
        cursor = overrides.pop("cursor", None)
        if "started_after" in overrides:
            overrides.setdefault("after_relative", "")
        if "started_before" in overrides:
            overrides.setdefault("before_relative", "")
        filters = dataclasses.replace(self, **overrides) if overrides else self
        pairs = [("status", status) for status in _canonical_statuses(filters.statuses)]
        if filters.function:
            pairs.append(("function", filters.function))
        if filters.after_relative or filters.started_after:
            pairs.append(("after", filters.after_relative or _iso(filters.started_after)))
        if filters.before_relative or filters.started_before:
            pairs.append(("before", filters.before_relative or _iso(filters.started_before)))
        if filters.search:
            pairs.append(("q", filters.search))
        if filters.text:
            pairs.append(("text", filters.text))
        if cursor:
            pairs.append(("cursor", cursor))
        return urlencode(pairs)

    @property
    def is_empty(self) -> bool:
        """True when nothing is filtered: the list shows every execution."""
        return not (
            self.statuses
            or self.function
            or self.started_after
            or self.started_before
            or self.search
            or self.text
        )

    def only_statuses(self) -> bool:
        """No filter but the status one: the chips then count every execution."""
        return not (self.function or self.started_after or self.started_before or self.search or self.text)

    def queryset(self, *, include_statuses: bool = True) -> ExecutionQuerySet:
        """The executions these filters match (unordered), optionally ignoring ``statuses``."""
        executions = (
            Execution.objects.of_function(self.function)
            .started_between(self.started_after, self.started_before)
            .matching(self.search)
            .containing_text(self.text)
        )
        if include_statuses:
            executions = executions.with_statuses(self.statuses)
        return executions


def _values(params: Mapping[str, Any] | QueryDict, key: str) -> list[str]:
    if isinstance(params, QueryDict):
        return [str(value) for value in params.getlist(key)]
    value = params.get(key)
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value]
    return [str(value)]


def _value(params: Mapping[str, Any] | QueryDict, key: str) -> str | None:
    found = _values(params, key)
    return found[-1] if found else None


def _canonical_statuses(statuses: Iterable[str]) -> tuple[str, ...]:
    """Deduplicated, in display order (unknown values, if any, last)."""
    wanted = list(dict.fromkeys(statuses))
    order = [value for value, _ in ExecutionStatus.choices]
    known = [value for value in order if value in wanted]
    return tuple(known + [value for value in wanted if value not in order])


def _parse_moment(
    raw: str | None, key: str, now: datetime.datetime, errors: list[str]
) -> tuple[datetime.datetime | None, str]:
    """(moment, relative text as typed or "") for an ``after``/``before`` value."""
    text = (raw or "").strip()
    if not text:
        return None, ""
    if match := _RELATIVE_TIME.match(text):
        amount, unit = int(match.group(1)), match.group(2).lower()
        try:
            moment = now - datetime.timedelta(**{_RELATIVE_UNITS[unit]: amount})
        except OverflowError:
            errors.append(f"{key}={text!r} reaches too far back; it was ignored.")
            return None, ""
        return moment, f"{amount}{'m' if unit == 'min' else unit}"
    if "T" not in text:
        text = text.replace(" ", "T", 1)  # "2026-01-15 10:00"
    # A "+" of a UTC offset typed into a URL arrives as a space.
    text = _OFFSET_AS_SPACE.sub(r"\1+\2", text)
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        errors.append(
            f"{key}={text!r} is neither an ISO 8601 time nor a relative one like 1h, 24h or 7d; "
            "it was ignored."
        )
        return None, ""
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_default_timezone())
    return moment, ""


def _iso(moment: datetime.datetime | None) -> str:
    return moment.isoformat() if moment else ""


# --- the list ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutionPage:
    """One page of the list, newest first; cursors are opaque strings for ``?cursor=``."""

    rows: list[Execution]
    next_cursor: str | None
    prev_cursor: str | None


def execution_page(filters: ExecutionFilters, *, cursor: str | None = None, limit: int = 50) -> ExecutionPage:
    """A page of the executions ``filters`` match, by (started_at, id) descending. One query.

    ``cursor`` is a ``next_cursor``/``prev_cursor`` of an earlier page; one that
    cannot be read (a hand-edited URL) gives the first page. Rows come with
    their function (``select_related``) and without ``LIST_DEFERRED_FIELDS``.
    """
    limit = max(1, min(int(limit), MAX_PAGE_SIZE))
    position = _decode_cursor(cursor) if cursor else None
    executions = filters.queryset().select_related("function").defer(*LIST_DEFERRED_FIELDS)
    if position is None:
        rows = list(executions.order_by("-started_at", "-id")[: limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        return ExecutionPage(rows, _next_cursor(rows) if more else None, None)

    backwards, started_at, pk = position
    if not backwards:
        rows = list(_older_than(executions, started_at, pk).order_by("-started_at", "-id")[: limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        # The page we came from is still there; an emptied page points back at the cursor.
        prev = (
            _encode_cursor(True, rows[0].started_at, rows[0].pk)
            if rows
            else _encode_cursor(True, started_at, pk - 1)
        )
        return ExecutionPage(rows, _next_cursor(rows) if more else None, prev)

    rows = list(_newer_than(executions, started_at, pk).order_by("started_at", "id")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit][::-1]
    prev = _encode_cursor(True, rows[0].started_at, rows[0].pk) if more and rows else None
    nxt = _next_cursor(rows) if rows else _encode_cursor(False, started_at, pk + 1)
    return ExecutionPage(rows, nxt, prev)


def _older_than(
    executions: QuerySet[Execution], started_at: datetime.datetime, pk: int
) -> QuerySet[Execution]:
    # started_at <= x bounds the index range scan; the OR only drops ties at x.
    return executions.filter(Q(started_at__lte=started_at), Q(started_at__lt=started_at) | Q(pk__lt=pk))


def _newer_than(
    executions: QuerySet[Execution], started_at: datetime.datetime, pk: int
) -> QuerySet[Execution]:
    return executions.filter(Q(started_at__gte=started_at), Q(started_at__gt=started_at) | Q(pk__gt=pk))


def _next_cursor(rows: Sequence[Execution]) -> str | None:
    return _encode_cursor(False, rows[-1].started_at, rows[-1].pk) if rows else None


def _encode_cursor(backwards: bool, started_at: datetime.datetime, pk: int) -> str:
    raw = json.dumps(["p" if backwards else "n", started_at.isoformat(), pk], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[bool, datetime.datetime, int] | None:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        direction, started_text, pk = json.loads(base64.urlsafe_b64decode(padded.encode()))
        started_at = datetime.datetime.fromisoformat(started_text)
        if direction not in ("n", "p") or timezone.is_naive(started_at) or not isinstance(pk, int):
            return None
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        return None
    return direction == "p", started_at, pk


# --- counts --------------------------------------------------------------------------------


def status_counts(filters: ExecutionFilters) -> dict[str, int | str]:
    """Executions per status under every filter except the status one (for the chips).

    One query. Without other filters these are the exact, maintained counts
    (``execution_counts_by_status``). Otherwise a status with more than ``COUNT_CAP``
    matches reads ``"10,000+"`` (a string); counting each status stops there, which
    keeps the cost bounded on large tables (see the module docstring). Every status
    has a key.
    """
    if filters.only_statuses():
        return dict(execution_counts_by_status())
    base = filters.queryset(include_statuses=False).order_by()
    statuses = [value for value, _ in ExecutionStatus.choices]
    if filters.text or (filters.search and not _is_arn(filters.search)):
        return _counts_in_one_pass(base, statuses)
    subqueries = [base.filter(status=status).values("pk")[: COUNT_CAP + 1] for status in statuses]
    found = _counts(subqueries, statuses)
    capped = f"{COUNT_CAP:,}+"
    return {status: capped if found[status] > COUNT_CAP else found[status] for status in statuses}


def _is_arn(search: str) -> bool:
    return search.strip().lower().startswith("arn:")


def _counts(subqueries: Sequence[QuerySet[Any]], labels: Sequence[str]) -> dict[str, int]:
    """COUNT(*) of each (sliced) queryset, all in one statement."""
    db = subqueries[0].db
    parts: list[str] = []
    params: list[Any] = []
    for index, queryset in enumerate(subqueries):
        sql, sub_params = queryset.query.get_compiler(using=db).as_sql()
        parts.append(f"SELECT {index}, COUNT(*) FROM ({sql}) AS counted_{index}")
        params += sub_params
    with connections[db].cursor() as cursor:
        cursor.execute(" UNION ALL ".join(parts), params)
        return {labels[index]: int(count) for index, count in cursor.fetchall()}


def _counts_in_one_pass(base: QuerySet[Execution], statuses: Sequence[str]) -> dict[str, int | str]:
    """Counts for a trigram search: the first SEARCH_COUNT_CAP + 1 matches, grouped by status.

    Per-status counting (above) would evaluate the search once per status, and a
    common word costs tens of milliseconds per evaluation. One pass evaluates it
    once. Up to the cap the counts are exact; past it they are lower bounds,
    shown as "N+" for every status.
    """
    sliced = base.values("status")[: SEARCH_COUNT_CAP + 1]
    sql, params = sliced.query.get_compiler(using=sliced.db).as_sql()
    with connections[sliced.db].cursor() as cursor:
        cursor.execute(
            f"SELECT matched.status, COUNT(*) FROM ({sql}) AS matched GROUP BY matched.status", params
        )
        found = {status: int(count) for status, count in cursor.fetchall()}
    counts = {status: found.get(status, 0) for status in statuses}
    if sum(found.values()) <= SEARCH_COUNT_CAP:
        return dict(counts)
    return {status: f"{count:,}+" for status, count in counts.items()}


def execution_counts_by_status() -> dict[str, int]:
    """Exact executions per status, all of them (the home page). One query, every status keyed.

    On PostgreSQL the counts are maintained by the database in the transaction of
    every change (``executions_status_count``, migration 0014): the sum of a few
    dozen rows, exact at the statement's snapshot, about a millisecond however many
    executions there are. Elsewhere (SQLite, embedded mode) the rows are counted.
    """
    counts = dict.fromkeys((value for value, _ in ExecutionStatus.choices), 0)
    connection = connections[Execution.objects.db]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT status, SUM(n) FROM executions_status_count GROUP BY status")
            found = cursor.fetchall()
    else:
        found = list(Execution.objects.order_by().values_list("status").annotate(n=Count("pk")))
    for status, count in found:
        counts[status] = int(count)
    return counts


def execution_counts_by_status_scanned() -> dict[str, int]:
    """The same counts by reading every execution (what the maintained counts must equal)."""
    counts = dict.fromkeys((value for value, _ in ExecutionStatus.choices), 0)
    for status, count in Execution.objects.order_by().values_list("status").annotate(n=Count("pk")):
        counts[status] = count
    return counts


# --- cached counts (executions.queries.cache: shared by every view, refreshed off the request) ---


def wanted_status_counts(filters: ExecutionFilters) -> Wanted[dict[str, int | str]]:
    """``status_counts(filters)``, for ``console_cache.cached_many``.

    Keyed by every filter but the status one (the counts ignore it), relative
    times as typed: ``?after=24h`` and ``?after=24h&status=FAILED`` share one entry.
    """
    digest = hashlib.sha256(filters.to_query(statuses=()).encode()).hexdigest()[:32]
    return Wanted(f"status-counts:{digest}", lambda _: status_counts(filters))


def wanted_function_names() -> Wanted[list[str]]:
    """Every function's name, sorted (the list's function filter)."""
    return Wanted(
        "function-names", lambda _: list(Function.objects.order_by("name").values_list("name", flat=True))
    )


# --- activity chart ------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivityBucket:
    """Executions started, and ended SUCCEEDED or failed (FAILED, TIMED_OUT), in [start, start + width)."""

    start: datetime.datetime
    started: int
    succeeded: int
    failed: int


class _BucketIndex(Func):
    """floor((column - origin) / width) as an integer, on PostgreSQL and SQLite."""

    output_field = IntegerField()

    def __init__(self, column: str, origin: datetime.datetime, width: datetime.timedelta) -> None:
        super().__init__(column)
        self.origin = origin
        self.width = width.total_seconds()

    def as_sql(self, compiler: Any, connection: Any, **extra_context: Any) -> tuple[str, list[Any]]:
        sql, params = compiler.compile(self.source_expressions[0])
        if connection.vendor == "postgresql":
            return (
                f"FLOOR(EXTRACT(EPOCH FROM ({sql} - %s)) / %s)::integer",
                [*params, self.origin, self.width],
            )
        if connection.vendor == "sqlite":
            origin = connection.ops.adapt_datetimefield_value(self.origin)
            return (
                f"CAST(((julianday({sql}) - julianday(%s)) * 86400.0) / %s AS INTEGER)",
                [*params, origin, self.width],
            )
        raise NotImplementedError(f"activity buckets on {connection.vendor}")


def activity(now: datetime.datetime, *, window: datetime.timedelta, buckets: int) -> list[ActivityBucket]:
    """``buckets`` equal slices of the ``window`` ending at ``now``, oldest first. Two queries.

    started: executions started in the slice; succeeded / failed: executions
    that ended in it as SUCCEEDED / as FAILED or TIMED_OUT (STOPPED is an
    operator's decision, not a failure).
    """
    if buckets < 1 or window <= datetime.timedelta(0):
        raise ValueError("activity needs a positive window and at least one bucket")
    width = window / buckets
    origin = now - window
    started = (
        Execution.objects.started_between(origin, now)
        .order_by()
        .annotate(bucket=_BucketIndex("started_at", origin, width))
        .values("bucket")
        .annotate(n=Count("pk"))
        .values_list("bucket", "n")
    )
    # All outcomes, STOPPED dropped below: a status filter would cost heap reads here.
    ended = (
        Execution.objects.ended_between(origin, now)
        .order_by()
        .annotate(bucket=_BucketIndex("ended_at", origin, width))
        .values("bucket", "status")
        .annotate(n=Count("pk"))
        .values_list("bucket", "status", "n")
    )
    counts = [[0, 0, 0] for _ in range(buckets)]
    for bucket, n in started:
        if 0 <= bucket < buckets:
            counts[bucket][0] += n
    for bucket, status, n in ended:
        if 0 <= bucket < buckets and status == ExecutionStatus.SUCCEEDED:
            counts[bucket][1] += n
        elif 0 <= bucket < buckets and status in FAILED_STATUSES:
            counts[bucket][2] += n
    return [
        ActivityBucket(start=origin + width * index, started=s, succeeded=ok, failed=bad)
        for index, (s, ok, bad) in enumerate(counts)
    ]


_SERIES = (
    ("started", "Started", "var(--chart-started, #6c8ebf)"),
    ("succeeded", "Succeeded", "var(--chart-succeeded, #2e9e5b)"),
    ("failed", "Failed", "var(--chart-failed, #d64545)"),
)


def activity_svg(buckets: list[ActivityBucket], *, width: int = 640, height: int = 160, title: str) -> str:
    """An accessible inline SVG bar chart of ``activity()`` (no script, no external CSS).

    Three bars per bucket (started, succeeded, failed), a y axis with its maximum,
    x labels at the start, middle and end, a legend, a ``<title>`` and a
    ``<desc>`` with the totals (``role="img"``, ``aria-labelledby``), and a
    tooltip per bucket. Colours come from CSS variables ``--chart-started``,
    ``--chart-succeeded`` and ``--chart-failed`` with fallbacks. Pure: all
    text is escaped; the same input gives the same markup.
    """
    esc = _xml_escape
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "chart"
    ident = f"activity-{slug}-{len(buckets)}"
    left, right, top, bottom = 40, 8, 22, 22
    plot_w = max(1, width - left - right)
    plot_h = max(1, height - top - bottom)
    peak = max((max(b.started, b.succeeded, b.failed) for b in buckets), default=0)
    scale_max = _nice_ceiling(peak)
    totals = {key: sum(getattr(b, key) for b in buckets) for key, _, _ in _SERIES}
    span = _span_text(buckets)
    desc = (
        f"{totals['started']:,} started, {totals['succeeded']:,} succeeded and {totals['failed']:,} failed"
        f"{span}; the busiest slice had {peak:,}."
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="activity-chart" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-labelledby="{ident}-title {ident}-desc">',
        f'<title id="{ident}-title">{esc(title)}</title>',
        f'<desc id="{ident}-desc">{esc(desc)}</desc>',
    ]
    # Legend.
    x = left
    for key, label, colour in _SERIES:
        parts.append(
            f'<rect x="{x}" y="4" width="10" height="10" class="series-{key}" style="fill: {colour}"/>'
            f'<text x="{x + 14}" y="13" font-size="11" fill="currentColor">{esc(label)}</text>'
        )
        x += 14 + 8 * len(label) + 12
    # Axes and y labels.
    base_y = top + plot_h
    parts.append(
        f'<line x1="{left}" y1="{base_y}" x2="{left + plot_w}" y2="{base_y}" stroke="currentColor" '
        f'stroke-opacity="0.4"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{base_y}" stroke="currentColor" stroke-opacity="0.4"/>'
        f'<text x="{left - 4}" y="{top + 4}" font-size="10" text-anchor="end" fill="currentColor">'
        f"{scale_max:,}</text>"
        f'<text x="{left - 4}" y="{base_y}" font-size="10" text-anchor="end" fill="currentColor">0</text>'
    )
    # Bars: one group per bucket, three bars in it.
    if buckets:
        slot = plot_w / len(buckets)
        bar = max(slot / 3 - 0.5, 0.5)
        for index, bucket in enumerate(buckets):
            x0 = left + index * slot
            tooltip = (
                f"{_time_label(bucket.start, buckets)}: {bucket.started:,} started, "
                f"{bucket.succeeded:,} succeeded, {bucket.failed:,} failed"
            )
            parts.append(f'<g class="bucket"><title>{esc(tooltip)}</title>')
            for offset, (key, _, colour) in enumerate(_SERIES):
                value = getattr(bucket, key)
                h = plot_h * value / scale_max if scale_max else 0
                parts.append(
                    f'<rect x="{x0 + offset * bar:.2f}" y="{base_y - h:.2f}" width="{bar:.2f}" '
                    f'height="{h:.2f}" class="series-{key}" style="fill: {colour}"/>'
                )
            parts.append("</g>")
        # X labels: first, middle, last bucket start.
        marks = sorted({0, len(buckets) // 2, len(buckets) - 1})
        for index in marks:
            # The chart is cached and shared by every reader: its times stay UTC, and say so.
            zone = " UTC" if index == marks[-1] else ""
            anchor = "start" if index == 0 else ("end" if index == len(buckets) - 1 else "middle")
            x_label = left + index * slot + (slot if anchor == "end" else 0)
            parts.append(
                f'<text x="{x_label:.2f}" y="{height - 6}" font-size="10" text-anchor="{anchor}" '
                f'fill="currentColor">{esc(_time_label(buckets[index].start, buckets))}{zone}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _xml_escape(text: str) -> str:
    return html.escape(str(text), quote=True)


def _nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (0 stays 0)."""
    if value <= 0:
        return 0
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10


def _time_label(moment: datetime.datetime, buckets: Sequence[ActivityBucket]) -> str:
    local = timezone.localtime(moment) if timezone.is_aware(moment) else moment
    span = buckets[-1].start - buckets[0].start if len(buckets) > 1 else datetime.timedelta(0)
    return local.strftime("%b %d %H:%M" if span >= datetime.timedelta(days=1) else "%H:%M")


def _span_text(buckets: Sequence[ActivityBucket]) -> str:
    if not buckets:
        return ""
    width = buckets[1].start - buckets[0].start if len(buckets) > 1 else datetime.timedelta(0)
    end = buckets[-1].start + width
    return f" between {_time_label(buckets[0].start, buckets)} and {_time_label(end, buckets)}"


def wanted_activity_chart(*, window: datetime.timedelta, buckets: int, title: str) -> Wanted[str]:
    """``activity_svg(activity(...))`` ending at the moment computed for (the home page's charts).

    The last hour's slices count every execution started in it: computed on each
    view, it would cost more the busier the engine is.
    """
    title_digest = hashlib.sha256(title.encode()).hexdigest()[:16]
    return Wanted(
        f"activity-chart:{int(window.total_seconds())}:{buckets}:{title_digest}",
        lambda moment: activity_svg(activity(moment, window=window, buckets=buckets), title=title),
    )


# --- waiting on people ---------------------------------------------------------------------


@dataclass(frozen=True)
class WaitingCallback:
    """An open execution parked on a callback someone has to complete."""

    execution: Execution
    operation: Operation
    name: str
    age: datetime.timedelta
    time_left: datetime.timedelta | None


# What the board shows, and nothing else: a hundred operations, executions and functions
# with every column cost more to build and to cache. Reading another field of these rows
# costs a query per row.
WAITING_FIELDS = (
    "operation_id",
    "name",
    "started_at",
    "callback_timeout_at",
    "callback_heartbeat_at",
    "execution",
    "execution__name",
    "execution__label",
    "execution__arn",
    "execution__status",
    "execution__timeout_at",
    "execution__function",
    "execution__function__name",
)


def waiting_on_people(*, limit: int = 100, now: datetime.datetime | None = None) -> list[WaitingCallback]:
    """STARTED callbacks of RUNNING/PAUSED executions, across functions, longest waiting first. One query.

    ``name`` is the callback's name, or for ``wait_for_callback`` the name of its
    WaitForCallback context (the callback inside is named "<name> create
    callback id"). ``time_left`` runs to the earliest of the callback timeout,
    the heartbeat deadline and the execution timeout (None when none is set;
    negative when a deadline passed and its timer has not fired yet).
    """
    now = now or clock.now()
    group_name = wait_for_callback_group_name()
    callbacks = (
        Operation.objects.filter(
            type=OperationType.CALLBACK,
            status=OperationStatus.STARTED,
            execution__status__in=ACTIVE_EXECUTION_STATUSES,
        )
        .select_related("execution__function")
        .only(*WAITING_FIELDS)
        .annotate(group_name=group_name)
        .order_by("started_at", "id")[: max(0, limit)]
    )
    waiting = []
    for op in callbacks:
        execution = op.execution
        deadlines = [
            moment
            for moment in (op.callback_timeout_at, op.callback_heartbeat_at, execution.timeout_at)
            if moment is not None
        ]
        waiting.append(
            WaitingCallback(
                execution=execution,
                operation=op,
                name=op.group_name or op.name or op.operation_id,
                age=now - op.started_at,
                time_left=(min(deadlines) - now) if deadlines else None,
            )
        )
    return waiting


def wanted_waiting_on_people(*, limit: int = 100) -> Wanted[list[WaitingCallback]]:
    """``waiting_on_people`` as of the moment computed for; show it with ``aged()``.

    Every viewer sees the same board, so one read serves them all; a callback
    completed meanwhile stays on it for a few seconds.
    """
    return Wanted(f"waiting-on-people:{limit}", lambda moment: waiting_on_people(limit=limit, now=moment))


def aged(board: Cached[list[WaitingCallback]], now: datetime.datetime) -> list[WaitingCallback]:
    """A cached board with its ages and time left as of ``now``."""
    shift = now - board.computed_at
    if not shift:
        return board.value
    return [
        dataclasses.replace(
            item,
            age=item.age + shift,
            time_left=None if item.time_left is None else item.time_left - shift,
        )
        for item in board.value
    ]


# --- functions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionStats:
    """``failed`` counts FAILED and TIMED_OUT; ``failure_rate`` is failed / executions."""

    executions: int
    failed: int
    failure_rate: float | None
    last_run: datetime.datetime | None


def function_stats(functions: Iterable[Function] | None = None) -> dict[int, FunctionStats]:
    """Function pk -> its stats, for ``functions`` (every function when None).

    One query (two when ``functions`` is None: the function ids). Functions
    without executions get zeros and ``failure_rate`` None.
    """
    executions = Execution.objects.order_by()
    if functions is None:
        keys = list(Function.objects.order_by().values_list("pk", flat=True))
    else:
        keys = [function.pk for function in functions]
        executions = executions.filter(function_id__in=keys)
    rows = executions.values("function_id").annotate(
        total=Count("pk"),
        failed=Count("pk", filter=Q(status__in=FAILED_STATUSES)),
        last_run=Max("started_at"),
    )
    stats = {
        row["function_id"]: FunctionStats(
            executions=row["total"],
            failed=row["failed"],
            failure_rate=row["failed"] / row["total"] if row["total"] else None,
            last_run=row["last_run"],
        )
        for row in rows
    }
    for key in keys:
        stats.setdefault(key, FunctionStats(executions=0, failed=0, failure_rate=None, last_run=None))
    return stats


# --- detail --------------------------------------------------------------------------------


@dataclass
class OperationNode:
    """An operation and the operations started inside it (parallel branches, map
    iterations, child contexts, wait_for_callback groups), in start order."""

    operation: Operation
    children: list[OperationNode] = field(default_factory=list)
    depth: int = 0


@dataclass(frozen=True)
class DetailData:
    """The operations, invocations and child executions of the detail page, in three queries.

    The history is not here: the page reads it a page at a time
    (``executions.queries.history``); an execution with 3,000 operations has
    ~6,100 events.

    ``operations`` are the top-level operations (the EXECUTION operation is
    ``execution_operation``, not in the tree); ``nodes`` finds any node by
    operation id; ``children`` maps a CHAINED_INVOKE operation id to the
    execution it started (rows without the large columns).
    """

    execution: Execution
    execution_operation: Operation | None
    operations: list[OperationNode]
    nodes: dict[str, OperationNode]
    invocations: list[Invocation]
    children: dict[str, Execution]

    def flattened(self) -> list[OperationNode]:
        """Every node depth-first in tree order (parents before their children)."""
        out: list[OperationNode] = []
        stack = list(reversed(self.operations))
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(reversed(node.children))
        return out


def execution_detail_data(execution: Execution) -> DetailData:
    """The detail page's data for ``execution`` (pass it with its function selected).

    Three queries whatever the size: operations by position, invocations by
    number, child executions. The tree is built here from
    ``parent_id``; an operation whose parent is unknown is shown at the top.
    """
    with _collector_paused():
        return _detail_data(execution)


def _detail_data(execution: Execution) -> DetailData:
    operations = _all_rows(Operation, execution, order_by="position")
    invocations = list(Invocation.objects.filter(execution=execution).order_by("number"))
    children = {
        child.parent_operation_id: child
        for child in Execution.objects.filter(parent=execution)
        .select_related("function")
        .defer(*LIST_DEFERRED_FIELDS)
        .order_by("started_at", "id")
    }
    root_op: Operation | None = None
    nodes: dict[str, OperationNode] = {}
    for op in operations:
        if op.type == OperationType.EXECUTION and root_op is None:
            root_op = op
            continue
        nodes[op.operation_id] = OperationNode(op)
    roots: list[OperationNode] = []
    for node in nodes.values():
        parent = nodes.get(node.operation.parent_id) if node.operation.parent_id else None
        if parent is None or parent is node:
            roots.append(node)
        else:
            parent.children.append(node)
    stack = [(node, 0) for node in roots]
    while stack:
        node, depth = stack.pop()
        node.depth = depth
        stack.extend((child, depth + 1) for child in node.children)
    return DetailData(
        execution=execution,
        execution_operation=root_op,
        operations=roots,
        nodes=nodes,
        invocations=invocations,
        children=children,
    )


def _all_rows(model: type[M], execution: Execution, *, order_by: str) -> list[M]:
    """Every row of ``model`` for ``execution`` as model instances, without the ORM's per-row cost.

    For thousands of rows the ORM's instance construction and Django's
    Python-level timestamptz loader (about 4 µs per value) cost more than the
    query. This reads through a Django cursor (so queries are still counted
    and logged) with psycopg's C loader for timestamps, applies the same
    field converters the ORM would, and fills instances without
    ``Model.__init__`` (as ``executions.engine.rows`` does on the checkpoint path;
    every column is read, so no defaults are needed).
    """
    db = connections[DEFAULT_DB_ALIAS]
    meta = model._meta
    fields = meta.concrete_fields
    quote = db.ops.quote_name
    columns = ", ".join(f"{quote(meta.db_table)}.{quote(model_field.column)}" for model_field in fields)
    sql = (
        f"SELECT {columns} FROM {quote(meta.db_table)} "
        f"WHERE {quote('execution_id')} = %s ORDER BY {quote(order_by)}"
    )
    with db.cursor() as cursor:
        if db.vendor == "postgresql":
            _use_c_timestamp_loader(cursor.cursor)
        cursor.execute(sql, [execution.pk])
        fetched = cursor.fetchall()
    converters = []
    for index, model_field in enumerate(fields):
        column = model_field.get_col(meta.db_table)
        functions = db.ops.get_db_converters(column) + column.get_db_converters(db)
        if functions:
            converters.append((index, functions, column))
    attnames = [model_field.attname for model_field in fields]
    instances: list[M] = []
    for row in fetched:
        values = list(row)
        for index, functions, column in converters:
            value = values[index]
            if value is not None:  # Django's converters all map None to None
                for function in functions:
                    value = function(value, column, db)
                values[index] = value
        instance = model.__new__(model)
        state = ModelState()
        state.adding = False
        state.db = db.alias
        instance.__dict__.update(zip(attnames, values, strict=True))
        instance._state = state
        instances.append(instance)
    return instances


def _use_c_timestamp_loader(cursor: Any) -> None:
    """Load timestamptz with psycopg's own (C) loader on this cursor only.

    It returns aware datetimes in the session time zone, which Django sets to UTC.
    """
    import psycopg
    from psycopg.pq import Format

    oid = psycopg.postgres.types["timestamptz"].oid
    cursor.adapters.register_loader(oid, psycopg.postgres.adapters.get_loader(oid, Format.TEXT))


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while thousands of model instances are built.

    They form no reference cycles, but their allocation triggers full
    collections that walk every object in the process: about 40% of the load
    time of a 3,000-operation execution. Collection resumes right after.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
