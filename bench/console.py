"""Console read-side benchmark: a million executions on a throwaway PostgreSQL (fsync on).

    .venv/bin/python -m bench.console [--executions 1000000] [--runs 30] [--json FILE] [--keep]
                                      [--pg NAME=VALUE ...]

Seeds the data (``bench/console_seed.py``: 1,000,000 executions over 10
functions and 90 days, one execution with 3,000 operations; about 3 minutes
on a 2-core machine), VACUUM ANALYZEs, then times what the console pages call:

- the execution list: ``execution_page`` + ``status_counts`` for the same
  filters, one after the other, for every filter the list offers and some
  combinations (target: p95 <= 150 ms);
- the detail page: loading the execution and ``execution_detail_data`` of the
  execution with 3,000 operations (p95 <= 300 ms);
- the home page and the function registry: activity charts, the
  waiting-on-people board, exact status counts, function stats.

Each case runs 3 times to warm up, then ``--runs`` rounds run every case once
in turn; the tables give p50, p95 (nearest rank) and the maximum in
milliseconds, measured in this process through Django (query building, the
database and model instances included; no template rendering), and this
process's CPU time. PostgreSQL runs with its defaults except
``shared_buffers=256MB`` (``--pg random_page_cost=1.1`` and the like add
settings). ``--keep`` leaves the server running afterwards and prints its URL,
for EXPLAIN ANALYZE (Ctrl-C stops it).
"""

from __future__ import annotations

import argparse
import datetime
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
        cases = list_cases(seeded) + detail_cases(seeded) + home_cases(seeded)
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
    group: str  # "list", "detail" or "home"
    label: str
    run: Callable[[], Any]
    describe: Callable[[Any], dict[str, Any]] = field(default=lambda result: {})
    budget_ms: float | None = None


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

    def run() -> Any:
        execution = Execution.objects.select_related("function").get(pk=seeded.big_execution_id)
        return cq.execution_detail_data(execution)

    def describe(data: Any) -> dict[str, Any]:
        return {
            "operations": len(data.nodes) + 1,
            "events": len(data.events),
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
        Case("home", "status_counts, no filter (capped)", lambda: cq.status_counts(cq.ExecutionFilters())),
        Case("home", "execution_counts_by_status (exact)", cq.execution_counts_by_status),
        Case("home", "function_stats (10 functions, exact)", cq.function_stats),
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
        "Execution detail: the execution + `execution_detail_data` (budget: p95 <= 300 ms)",
        "",
        "| case | p50 ms | p95 ms | max ms | cpu p50 ms | loaded |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in (row for row in results if row["group"] == "detail"):
        loaded = (
            f"{row['operations']:,} operations, {row['events']:,} events, {row['invocations']} invocations, "
            f"{row['children']} child executions"
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
    return "\n".join(lines)


_SHORT = {"RUNNING": "R", "SUCCEEDED": "S", "FAILED": "F", "TIMED_OUT": "T", "STOPPED": "St", "PAUSED": "P"}


def _p95(row: dict[str, Any]) -> str:
    over = row["budget_ms"] is not None and row["p95_ms"] > row["budget_ms"]
    return f"{row['p95_ms']} **over**" if over else str(row["p95_ms"])


if __name__ == "__main__":
    main()
