"""Console read-side benchmark: a million executions on a throwaway PostgreSQL (fsync on).

    .venv/bin/python -m bench.console [--executions 1000000] [--runs 30] [--json FILE] [--keep]
                                      [--pg NAME=VALUE ...]

Seeds the data (``bench/console_seed.py``: 1,000,000 executions over 10
functions and 90 days, one execution with 3,000 operations; about 3 minutes
on a 2-core machine), VACUUM ANALYZEs, then times what the console pages call:

- the execution list: ``execution_page`` + ``status_counts`` for the same
  filters, one after the other, for every filter the list offers and some
  combinations (target: p95 <= 150 ms);
- the detail page: loading the execution, ``execution_detail_data`` and the
  first page of history of the execution with 3,000 operations;
- the home page and the function registry: activity charts, the
  waiting-on-people board, exact status counts (maintained, and scanned for
  comparison), function stats;
- rendered pages, the whole view through Django's test client (middleware,
  session and permission queries, the view, template rendering, gzip): the
  detail page of the 3,000-operation execution (p95 <= 300 ms, HTML <= 200 KB)
  and the home page (p95 <= 150 ms), with the console cache warm as every view
  but the first finds it, and cold (charts and board computed in the view).

Each case runs 3 times to warm up, then ``--runs`` rounds run every case once
in turn; the tables give p50, p95 (nearest rank) and the maximum in
milliseconds, measured in this process through Django (query building, the
database and model instances included; no template rendering), and this
process's CPU time (the cached home page's refresher thread runs in this
process too, as it does in a web process). PostgreSQL runs with its defaults except
``shared_buffers=256MB`` (``--pg random_page_cost=1.1`` and the like add
settings). ``--keep`` leaves the server running afterwards and prints its URL,
for EXPLAIN ANALYZE (Ctrl-C stops it).
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LIST_BUDGET_MS = 150
DETAIL_BUDGET_MS = 300
HOME_BUDGET_MS = 150
DETAIL_HTML_BUDGET_BYTES = 200_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--operations", type=int, default=3000, help="operations of the big execution")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the server running at the end")
    parser.add_argument(
        "--pg", action="append", default=[], metavar="NAME=VALUE", help="a PostgreSQL setting (repeatable)"
    )
    args = parser.parse_args()
    settings: dict[str, str] = {"shared_buffers": "256MB"}
    settings.update(item.split("=", 1) for item in args.pg)

    sys.path.insert(0, str(REPO))
    from tests.servers import start_postgres

    with start_postgres(fsync=True, settings=settings) as pg:
        os.environ.update(
            DATABASE_URL=pg.url,
            DJANGO_SETTINGS_MODULE="durable_console.settings",
            DURABLE_VAR_DIR=str(Path(pg.data_dir).parent / "var"),
        )
        for name in ("CELERY_BROKER_URL", "REDIS_URL"):
            os.environ.pop(name, None)
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        from bench.console_seed import seed

        call_command("migrate", verbosity=0)
        connection.ensure_connection()
        connection.connection.autocommit = True
        print(f"seeding {args.executions:,} executions ...", file=sys.stderr, flush=True)
        began = time.perf_counter()
        with connection.connection.cursor() as cursor:
            seeded = seed(cursor, executions=args.executions, operations=args.operations)
        seed_seconds = time.perf_counter() - began
        print(f"seeded in {seed_seconds:.0f} s {seeded.seconds}", file=sys.stderr, flush=True)

        load_before = os.getloadavg()
        cases = list_cases(seeded) + detail_cases(seeded) + home_cases(seeded) + page_cases(seeded)
        measured = measure(cases, args.runs)
        report = {
            "machine": _machine(pg.version),
            "executions": seeded.executions,
            "seed_seconds": round(seed_seconds, 1),
            "runs": args.runs,
            "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "postgres_settings": settings,
            "results": measured,
        }
        print(render(report))
        if args.json:
            args.json.write_text(json.dumps(report, indent=2, default=str))
        if args.keep:
            print(f"\nPostgreSQL stays up at {pg.url} (Ctrl-C stops it)", file=sys.stderr, flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass


# --- cases ---------------------------------------------------------------------------------


@dataclass
class Case:
    group: str  # "list", "detail", "home" or "page"
    label: str
    run: Callable[[], Any]
    describe: Callable[[Any], dict[str, Any]] = field(default=lambda result: {})
    budget_ms: float | None = None
    budget_bytes: int | None = None  # of the rendered HTML, uncompressed


def list_cases(seeded: Any) -> list[Case]:
    from executions.queries import console as cq

    now = seeded.now
    hour, day = datetime.timedelta(hours=1), datetime.timedelta(days=1)
    F = cq.ExecutionFilters
    deep = _cursor_after_pages(F(), pages=50)
    month_ago = F(started_after=now - 31 * day, started_before=now - 30 * day)
    filters: list[tuple[str, Any, str | None]] = [
        ("no filter", F(), None),
        ("no filter, page 51 (keyset)", F(), deep),
        *[(f"status {status}", F(statuses=(status,)), None) for status in _statuses()],
        ("status RUNNING + PAUSED", F(statuses=("RUNNING", "PAUSED")), None),
        ("function (busiest, ~24%)", F(function="order-processing"), None),
        ("function (quietest, ~6%)", F(function="inventory-sync"), None),
        ("time range: last hour", F(started_after=now - hour), None),
        ("time range: last 24 h", F(started_after=now - day), None),
        ("time range: last 7 days", F(started_after=now - 7 * day), None),
        ("time range: a day, a month ago", month_ago, None),
        ("name prefix, ~8 matches", F(search=seeded.sample_name_prefix), None),
        ("name prefix, ~8,000 matches", F(search="order-00"), None),
        ("name contains (part of a UUID)", F(search="4242"), None),
        ("exact ARN", F(search=seeded.sample_arn), None),
        ("text, rare (one SKU, ~10 rows)", F(text=seeded.sample_sku or "SKU-04242"), None),
        ("text, ~1% (BLACKFRIDAY)", F(text="BLACKFRIDAY"), None),
        ("text, ~20% (express)", F(text="express"), None),
        ("text, no match", F(text="zzzqqq"), None),
        ("status FAILED + function", F(statuses=("FAILED",), function="order-processing"), None),
        ("status PAUSED + function (quietest)", F(statuses=("PAUSED",), function="inventory-sync"), None),
        ("status FAILED + last 24 h", F(statuses=("FAILED",), started_after=now - day), None),
        (
            "function + last 7 days + text (~20%)",
            F(function="order-processing", started_after=now - 7 * day, text="express"),
            None,
        ),
    ]

    def page_and_counts(filters: Any, cursor: str | None) -> tuple[Any, Any]:
        return cq.execution_page(filters, cursor=cursor), cq.status_counts(filters)

    return [
        Case(
            "list",
            label,
            run=lambda filters=filters, cursor=cursor: page_and_counts(filters, cursor),
            describe=lambda result: {"rows": len(result[0].rows), "counts": result[1]},
            budget_ms=LIST_BUDGET_MS,
        )
        for label, filters, cursor in filters
    ]


def detail_cases(seeded: Any) -> list[Case]:
    from executions.models import Execution
    from executions.queries import console as cq
    from executions.queries.history import history_page

    def run() -> Any:
        execution = Execution.objects.select_related("function").get(pk=seeded.big_execution_id)
        return cq.execution_detail_data(execution), history_page(execution)

    def describe(result: Any) -> dict[str, Any]:
        data, history = result
        return {
            "operations": len(data.nodes) + 1,
            "events": len(history.events),
            "events_total": history.total,
            "invocations": len(data.invocations),
            "children": len(data.children),
        }

    return [Case("detail", "execution with 3,000 operations", run, describe, DETAIL_BUDGET_MS)]


def home_cases(seeded: Any) -> list[Case]:
    from executions.queries import console as cq

    now = seeded.now
    one_hour, one_day = datetime.timedelta(hours=1), datetime.timedelta(days=1)
    hour = cq.activity(now, window=one_hour, buckets=60)
    return [
        Case("home", "activity, last hour (60 buckets)", lambda: _activity(now, one_hour, 60)),
        Case("home", "activity, last day (48 buckets)", lambda: _activity(now, one_day, 48)),
        Case("home", "activity_svg (60 buckets)", lambda: cq.activity_svg(hour, title="Last hour")),
        Case("home", "waiting_on_people (100 of ~10,500)", lambda: cq.waiting_on_people(now=now)),
        Case(
            "home", "status_counts, no filter (maintained)", lambda: cq.status_counts(cq.ExecutionFilters())
        ),
        Case("home", "execution_counts_by_status (exact, maintained)", cq.execution_counts_by_status),
        Case(
            "home",
            "execution_counts_by_status_scanned (exact, every row)",
            cq.execution_counts_by_status_scanned,
        ),
        Case("home", "function_stats (10 functions, exact)", cq.function_stats),
    ]


def page_cases(seeded: Any) -> list[Case]:
    """Whole rendered pages, as a logged-in viewer's browser would get them (gzip accepted)."""
    from django.contrib.auth.models import Group, User
    from django.test import Client

    from executions.access import ensure_groups
    from executions.queries import cache as console_cache

    ensure_groups()
    user, _ = User.objects.get_or_create(username="bench-viewer")
    user.groups.add(Group.objects.get(name="viewers"))
    client = Client(HTTP_HOST="127.0.0.1", HTTP_ACCEPT_ENCODING="gzip")
    client.force_login(user)

    def fetch(path: str) -> Any:
        response = client.get(path)
        if response.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {response.status_code}")
        return response

    def cold_home() -> Any:
        console_cache.forget()  # every cached value unreachable: the view computes them
        return fetch("/")

    def sizes(response: Any) -> dict[str, Any]:
        body = response.content
        compressed = response.get("Content-Encoding") == "gzip"
        html = gzip.decompress(body) if compressed else body
        return {"html_bytes": len(html), "gzip_bytes": len(body) if compressed else len(gzip.compress(html))}

    detail = f"/executions/{seeded.big_execution_id}/"
    return [
        Case(
            "page",
            "execution detail, 3,000 operations",
            lambda: fetch(detail),
            sizes,
            DETAIL_BUDGET_MS,
            DETAIL_HTML_BUDGET_BYTES,
        ),
        Case("page", "home (console cache warm)", lambda: fetch("/"), sizes, HOME_BUDGET_MS),
        Case("page", "home (cold cache: charts and board computed)", cold_home, sizes, HOME_BUDGET_MS),
    ]


def measure(cases: list[Case], runs: int) -> list[dict[str, Any]]:
    """Every case 3 times to warm up, then ``runs`` rounds of every case in turn.

    Rounds rather than one case after another: on a shared machine a burst of
    load elsewhere then touches every case alike instead of a few.
    """
    results: dict[str, Any] = {}
    for case in cases:
        for _ in range(3):
            results[case.label] = case.run()
    wall: dict[str, list[float]] = {case.label: [] for case in cases}
    cpu: dict[str, list[float]] = {case.label: [] for case in cases}
    for round_number in range(runs):
        for case in cases:
            began, began_cpu = time.perf_counter(), time.process_time()
            case.run()
            wall[case.label].append((time.perf_counter() - began) * 1000)
            cpu[case.label].append((time.process_time() - began_cpu) * 1000)
        print(f"  round {round_number + 1}/{runs}", file=sys.stderr, flush=True)
    return [
        {
            "group": case.group,
            "case": case.label,
            **_summary(wall[case.label]),
            "cpu_p50_ms": round(statistics.median(cpu[case.label]), 1),
            "budget_ms": case.budget_ms,
            "budget_bytes": case.budget_bytes,
            **case.describe(results[case.label]),
        }
        for case in cases
    ]


# --- helpers ---------------------------------------------------------------------------------


def _activity(now: datetime.datetime, window: datetime.timedelta, buckets: int) -> Any:
    from executions.queries import console as cq

    return cq.activity(now, window=window, buckets=buckets)


def _statuses() -> list[str]:
    from executions.models import ExecutionStatus

    return [value for value, _ in ExecutionStatus.choices]


def _cursor_after_pages(filters: Any, pages: int) -> str | None:
    from executions.queries import console as cq

    cursor = None
    for _ in range(pages):
        cursor = cq.execution_page(filters, cursor=cursor).next_cursor
    return cursor


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)], 1),
        "max_ms": round(ordered[-1], 1),
    }


def _machine(postgres: str) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "postgres": postgres,
        "platform": platform.platform(),
    }


def render(report: dict[str, Any]) -> str:
    """The Markdown tables the README quotes."""
    machine = report["machine"]
    results = report["results"]
    lines = [
        f"{report['executions']:,} executions; {report['runs']} rounds of every case after 3 warm-up runs; "
        f"{machine['cpus']} CPUs, {machine['postgres']}, Python {machine['python']}; "
        f"load average {report['load_average_before_after'][0]} before, "
        f"{report['load_average_before_after'][1]} after; seeding took {report['seed_seconds']:.0f} s. "
        "cpu = this process's CPU time (Django and psycopg), the rest is the database and waiting.",
        "",
        "Execution list: `execution_page` + `status_counts` (budget: p95 <= 150 ms)",
        "",
        "| filter | p50 ms | p95 ms | max ms | cpu p50 ms | rows | status counts |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in (row for row in results if row["group"] == "list"):
        counts = ", ".join(f"{_SHORT[status]} {count}" for status, count in row["counts"].items())
        lines.append(
            f"| {row['case']} | {row['p50_ms']} | {_p95(row)} | {row['max_ms']} | {row['cpu_p50_ms']} "
            f"| {row['rows']} | {counts} |"
        )
    lines += [
        "",
        "Execution detail: the execution + `execution_detail_data` + the first page of history",
        "",
        "| case | p50 ms | p95 ms | max ms | cpu p50 ms | loaded |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in (row for row in results if row["group"] == "detail"):
        loaded = (
            f"{row['operations']:,} operations, {row['events']:,} of {row['events_total']:,} events, "
            f"{row['invocations']} invocations, {row['children']} child executions"
        )
        lines.append(
            f"| {row['case']} | {row['p50_ms']} | {_p95(row)} | {row['max_ms']} | {row['cpu_p50_ms']} "
            f"| {loaded} |"
        )
    lines += [
        "",
        "Home page and registry",
        "",
        "| case | p50 ms | p95 ms | max ms | cpu p50 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in (row for row in results if row["group"] == "home"):
        lines.append(
            f"| {row['case']} | {row['p50_ms']} | {row['p95_ms']} | {row['max_ms']} | {row['cpu_p50_ms']} |"
        )
    lines += [
        "",
        "Rendered pages: the whole view through Django's test client, gzip accepted "
        "(budgets: detail p95 <= 300 ms and HTML <= 200 KB, home p95 <= 150 ms)",
        "",
        "| page | p50 ms | p95 ms | max ms | cpu p50 ms | HTML KB | gzip KB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in (row for row in results if row["group"] == "page"):
        lines.append(
            f"| {row['case']} | {row['p50_ms']} | {_p95(row)} | {row['max_ms']} | {row['cpu_p50_ms']} "
            f"| {_kb(row)} | {row['gzip_bytes'] / 1000:.1f} |"
        )
    return "\n".join(lines)


def _kb(row: dict[str, Any]) -> str:
    over = row["budget_bytes"] is not None and row["html_bytes"] > row["budget_bytes"]
    return f"{row['html_bytes'] / 1000:.1f}" + (" **over**" if over else "")


_SHORT = {"RUNNING": "R", "SUCCEEDED": "S", "FAILED": "F", "TIMED_OUT": "T", "STOPPED": "St", "PAUSED": "P"}


def _p95(row: dict[str, Any]) -> str:
    over = row["budget_ms"] is not None and row["p95_ms"] > row["budget_ms"]
    return f"{row['p95_ms']} **over**" if over else str(row["p95_ms"])


if __name__ == "__main__":
    main()
