"""Batch processing: fetch record ids, split into batches, process them with
``map`` (at most five at a time), aggregate.

Demonstrates ``map`` with ``max_concurrency=5``: each batch is one map
iteration with its own retried step, so a crash or a transient failure redoes
one batch, not the job. The record ids are fetched once in a step; the split
is plain code over that checkpointed list, so every replay forms the same
batches. With ``all_completed`` a poisoned batch does not stop the others; the
aggregate reports which batches failed.

Input (all optional): ``job_id``, ``record_count`` (default 1000),
``batch_size`` (default 50), ``poison_batches`` (batch indexes that fail
permanently), ``faults`` (e.g. {"records.process": 1}: every batch fails its
first attempt), ``max_attempts``, ``retry_delay_seconds``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aws_durable_execution_sdk_python import (
    BatchResult,
    DurableContext,
    StepContext,
    durable_execution,
    durable_step,
)
from aws_durable_execution_sdk_python.config import (
    CompletionConfig,
    MapConfig,
    StepConfig,
)

from examples.inputs import as_event, int_field, int_list_field, key_field
from examples.policies import retrying_step
from examples.services import Faults, RecordStore

MAX_CONCURRENCY = 5

BatchWorker = Callable[[DurableContext, list[str], int, Sequence[list[str]]], dict[str, Any]]


@dataclass(frozen=True)
class Job:
    job_id: str
    record_count: int
    batch_size: int
    poison_batches: frozenset[int]
    faults: Faults


def read_job(event: dict[str, Any], context: DurableContext) -> Job:
    return Job(
        job_id=key_field(event, "job_id", context, "batch"),
        record_count=int_field(event, "record_count", 1000, minimum=1, maximum=50_000),
        batch_size=int_field(event, "batch_size", 50, minimum=1, maximum=5_000),
        poison_batches=frozenset(int_list_field(event, "poison_batches")),
        faults=Faults.from_input(event),
    )


def split(record_ids: Sequence[str], size: int) -> list[list[str]]:
    """Consecutive batches of ``size`` ids (the last may be shorter)."""
    return [list(record_ids[start : start + size]) for start in range(0, len(record_ids), size)]


@durable_step
def fetch_record_ids(step: StepContext, job: Job) -> list[str]:
    return RecordStore(job.faults).fetch_ids(job.job_id, job.record_count)


@durable_step
def process_records(step: StepContext, job: Job, index: int, record_ids: list[str]) -> dict[str, Any]:
    store = RecordStore(job.faults)
    return store.process(job.job_id, index, record_ids, poisoned=index in job.poison_batches)


@durable_step
def aggregate(step: StepContext, job: Job, processed: int, value: int) -> dict[str, Any]:
    return RecordStore(job.faults).aggregate(job.job_id, processed, value)


def batch_worker(job: Job, config: StepConfig) -> BatchWorker:
    """The map function: one checkpointed, retried step per batch."""

    def process_batch(
        context: DurableContext, batch: list[str], index: int, _: Sequence[list[str]]
    ) -> dict[str, Any]:
        return context.step(process_records(job, index, batch), name=f"process-batch-{index}", config=config)

    return process_batch


def summarise(results: BatchResult, record_count: int) -> dict[str, Any]:
    done = [item.result for item in results.succeeded() if item.result is not None]
    return {
        "records": record_count,
        "batches": results.total_count,
        "succeeded_batches": len(done),
        "failed_batches": sorted(item.index for item in results.failed()),
        "processed": sum(batch["processed"] for batch in done),
        "value": sum(batch["value"] for batch in done),
        "retried_batches": sorted(batch["batch"] for batch in done if batch["attempt"] > 1),
    }


@durable_execution
def handler(event: dict[str, Any] | None, context: DurableContext) -> dict[str, Any]:
    """Process every record in batches; returns counts, the total and failed batches."""
    event = as_event(event)
    job = read_job(event, context)
    record_ids = context.step(fetch_record_ids(job), name="fetch-record-ids", config=retrying_step(event))
    batches = split(record_ids, job.batch_size)
    config = MapConfig(
        max_concurrency=MAX_CONCURRENCY,
        # Every batch runs even if some fail; the aggregate reports the failures.
        completion_config=CompletionConfig.all_completed(),
        item_namer=lambda _batch, index: f"batch-{index}",
    )
    results = context.map(
        batches, batch_worker(job, retrying_step(event)), name="process-batches", config=config
    )
    summary = summarise(results, len(record_ids))
    report = context.step(
        aggregate(job, summary["processed"], summary["value"]),
        name="aggregate-results",
        config=retrying_step(event),
    )
    status = "completed" if not summary["failed_batches"] else "completed_with_failures"
    return {
        "status": status,
        "job_id": job.job_id,
        "max_concurrency": MAX_CONCURRENCY,
        "report_id": report["report_id"],
        **summary,
    }
