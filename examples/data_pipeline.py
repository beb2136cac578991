"""Multi-stage data pipeline: extract, cool down, transform in batches, wait for
off-peak hours, load, verify.

Demonstrates durable waits: the execution sleeps without holding a worker,
first for a fixed rate-limit cool-down (5 minutes by default), then until the
next off-peak hour. The off-peak wait is computed from a reference time that is
the same on every replay (the input's ``reference_time``, else the execution's
start timestamp) and recorded in a step, so a replay never re-reads the clock.
Each transformed batch is its own checkpoint: a crash resumes after the last
staged batch instead of starting over.

Input (all optional): ``job_id``, ``dataset``, ``record_count`` (default 500),
``batch_size`` (default 100), ``rate_limit_wait_seconds`` (default 300),
``off_peak_hour`` (UTC, default 2), ``reference_time`` (ISO 8601),
``off_peak_wait_seconds`` (overrides the computed wait; 0 skips it),
``faults``, ``max_attempts``, ``retry_delay_seconds``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aws_durable_execution_sdk_python import (
    DurableContext,
    StepContext,
    durable_execution,
    durable_step,
    durable_with_child_context,
)
from aws_durable_execution_sdk_python.config import Duration

from examples.inputs import as_event, int_field, key_field, text_field
from examples.policies import retrying_step
from examples.services import DataSource, Faults, Warehouse

T = TypeVar("T")
DAY = 86_400


@dataclass(frozen=True)
class Job:
    job_id: str
    dataset: str
    record_count: int
    batch_size: int
    cooldown_seconds: int
    off_peak_hour: int
    reference_time: str | None  # fixed "now" for the off-peak plan (tests, backfills)
    off_peak_wait_override: int | None
    faults: Faults

    @property
    def batches(self) -> list[tuple[int, int]]:
        """[start, stop) row ranges, one per batch."""
        return [
            (start, min(start + self.batch_size, self.record_count))
            for start in range(0, self.record_count, self.batch_size)
        ]


def read_job(event: dict[str, Any], context: DurableContext) -> Job:
    return Job(
        job_id=key_field(event, "job_id", context, "etl"),
        dataset=text_field(event, "dataset", "daily-sales"),
        record_count=int_field(event, "record_count", 500, minimum=1, maximum=100_000),
        batch_size=int_field(event, "batch_size", 100, minimum=1, maximum=10_000),
        cooldown_seconds=int_field(event, "rate_limit_wait_seconds", 300, minimum=1, maximum=DAY),
        off_peak_hour=int_field(event, "off_peak_hour", 2, minimum=0, maximum=23),
        reference_time=optional(event, "reference_time", reference_time_field),
        off_peak_wait_override=optional(event, "off_peak_wait_seconds", override_field),
        faults=Faults.from_input(event),
    )


def optional(event: dict[str, Any], name: str, read: Callable[[dict[str, Any]], T]) -> T | None:
    """``read(event)`` when the input has ``name``, else None."""
    return read(event) if event.get(name) is not None else None


def reference_time_field(event: dict[str, Any]) -> str:
    value = text_field(event, "reference_time", "")
    parse_time(value)  # reject a bad timestamp before any step runs
    return value


def override_field(event: dict[str, Any]) -> int:
    return int_field(event, "off_peak_wait_seconds", 0, minimum=0, maximum=DAY)


# --- off-peak planning (pure) --------------------------------------------------------


def parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def next_off_peak(moment: datetime, off_peak_hour: int) -> datetime:
    """When loading may start: ``moment`` itself inside the off-peak hour, else
    the start of the next one."""
    moment = moment.astimezone(UTC)
    if moment.hour == off_peak_hour:
        return moment
    window = moment.replace(hour=off_peak_hour, minute=0, second=0, microsecond=0)
    return window if window > moment else window + timedelta(days=1)


def seconds_until_off_peak(moment: datetime, off_peak_hour: int) -> int:
    """Whole seconds from ``moment`` to the next off-peak hour (0 inside it)."""
    return math.ceil((next_off_peak(moment, off_peak_hour) - moment).total_seconds())


def execution_started_at(context: DurableContext) -> datetime | None:
    """When the execution started, as the service recorded it (same on every replay)."""
    operation = context.state.get_execution_operation()
    return as_datetime(operation.start_timestamp) if operation is not None else None


def as_datetime(value: object) -> datetime | None:
    """A timestamp as the service may send it: datetime, epoch (s or ms) or ISO text."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        # Lambda's JSON carries epoch milliseconds; anything that large is ms.
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
    if isinstance(value, str) and value:
        return parse_time(value)
    return None


def reference_moment(reference: str | None, started_at: datetime | None) -> tuple[str, datetime]:
    """(where the time came from, the time) that the off-peak plan starts from."""
    if reference is not None:
        return "reference_time", parse_time(reference)
    if started_at is not None:
        return "execution_start", started_at.astimezone(UTC)
    # Only reached when the service sent no execution record. The plan step's
    # checkpoint still pins the value for every later replay.
    return "clock", datetime.now(UTC)


@durable_step
def plan_load_window(step: StepContext, job: Job, started_at: datetime | None) -> dict[str, Any]:
    """Decide how long to wait for the off-peak window; checkpointed, so fixed."""
    source, base = reference_moment(job.reference_time, started_at)
    # The rate-limit cool-down has already passed when this runs.
    ready_at = base + timedelta(seconds=job.cooldown_seconds)
    if job.off_peak_wait_override is None:
        load_at = next_off_peak(ready_at, job.off_peak_hour)
        wait = math.ceil((load_at - ready_at).total_seconds())
    else:
        wait = job.off_peak_wait_override
        source, load_at = "override", ready_at + timedelta(seconds=wait)
    return {
        "reference": source,
        "ready_at": ready_at.isoformat(),
        "load_at": load_at.isoformat(),
        "off_peak_hour_utc": job.off_peak_hour,
        "wait_seconds": wait,
    }


def wait_for_off_peak(context: DurableContext, job: Job) -> dict[str, Any]:
    """Plan the load window in a step, then sleep until it opens."""
    plan = plan_load_window(job, execution_started_at(context))
    window = context.step(plan, name="plan-load-window")
    if window["wait_seconds"] >= 1:
        context.wait(Duration.from_seconds(window["wait_seconds"]), name="wait-for-off-peak")
    return window


# --- steps ---------------------------------------------------------------------------


@durable_step
def extract(step: StepContext, job: Job) -> dict[str, Any]:
    return DataSource(job.faults).extract(job.job_id, job.dataset, job.record_count)


@durable_step
def transform_batch(step: StepContext, job: Job, number: int, start: int, stop: int) -> dict[str, Any]:
    """Read one slice of the snapshot, normalise it, stage it in the warehouse."""
    rows = DataSource(job.faults).read(job.dataset, start, stop)
    cleaned = [{"id": row["id"], "amount_cents": max(0, int(row["amount_cents"]))} for row in rows]
    return Warehouse(job.faults).stage(job.job_id, number, cleaned)


@durable_with_child_context
def transform(context: DurableContext, event: dict[str, Any], job: Job) -> dict[str, Any]:
    staged = [
        context.step(
            transform_batch(job, number, start, stop),
            name=f"transform-batch-{number}",
            config=retrying_step(event),
        )
        for number, (start, stop) in enumerate(job.batches, start=1)
    ]
    return {
        "batches": len(staged),
        "rows": sum(b["rows"] for b in staged),
        "total_cents": sum(b["total_cents"] for b in staged),
    }


@durable_step
def load(step: StepContext, job: Job, rows: int, total_cents: int) -> dict[str, Any]:
    return Warehouse(job.faults).load(job.job_id, f"analytics.{job.dataset}", rows, total_cents)


@durable_step
def verify(step: StepContext, job: Job) -> dict[str, Any]:
    return Warehouse(job.faults).verify(job.job_id, job.record_count)


@durable_execution
def handler(event: dict[str, Any] | None, context: DurableContext) -> dict[str, Any]:
    """Run the pipeline; returns row counts, totals and the waits taken."""
    event = as_event(event)
    job = read_job(event, context)
    retrying = retrying_step(event)
    snapshot = context.step(extract(job), name="extract", config=retrying)
    context.wait(Duration.from_seconds(job.cooldown_seconds), name="rate-limit-cooldown")
    staged = context.run_in_child_context(transform(event, job), name="transform")
    window = wait_for_off_peak(context, job)
    loaded = context.step(load(job, staged["rows"], staged["total_cents"]), name="load", config=retrying)
    check = context.step(verify(job), name="verify", config=retrying)
    return {
        "status": "loaded" if check["ok"] else "verification_failed",
        "job_id": job.job_id,
        "dataset": job.dataset,
        "snapshot_id": snapshot["snapshot_id"],
        "records": snapshot["records"],
        "batches": staged["batches"],
        "rows_loaded": loaded["rows"],
        "total_cents": staged["total_cents"],
        "table": loaded["table"],
        "rate_limit_wait_seconds": job.cooldown_seconds,
        "load_window": window,
        "verified": check["ok"],
    }
