"""Traces (issue 13): one trace per execution, with the SDK's in-memory exporter.

The handlers run in the test process (the engine driver's runner), so the
invocation and checkpoint spans a sandbox child would send are made here, where
the in-memory exporter sees them. The span a supervisor sends for a sandbox it
had to kill is checked with a real sandbox child that runs past its Timeout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from durable_console.bootstrap import register_demo_functions
from examples import ledger
from executions import services, tracing
from executions.engine.functions import function_register
from executions.models import Execution
from executions.workers.invoker import Invoker, SandboxRunner
from executions.workers.sandbox import SandboxPool
from tests import sandbox_handlers
from tests.engine_driver import engine_driver, handler_path, start

pytestmark = pytest.mark.django_db(transaction=True)  # the root span goes out after commit


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.use_exporter(exporter, batch=False)
    yield exporter
    tracing.stop()


def by_name(exporter: InMemorySpanExporter, name: str, arn: str) -> list[Any]:
    return [
        span
        for span in exporter.get_finished_spans()
        if span.name == name and span.attributes.get(tracing.ARN) == arn
    ]


def test_an_execution_is_one_trace_of_invocations_and_their_checkpoints(spans: InMemorySpanExporter) -> None:
    register_demo_functions()
    with engine_driver() as driver:
        booking = start("booking", {"booking_id": "t-1", "faults": {"booking.reserve_room": 1}})
        driver.run_until(lambda: Execution.objects.get(pk=booking.pk).is_terminal)
    ledger.close()
    booking.refresh_from_db()
    assert booking.status == "SUCCEEDED"
    arn = booking.arn

    (root,) = by_name(spans, "execution", arn)
    invocations = sorted(
        by_name(spans, "invocation", arn), key=lambda span: span.attributes["durable.invocation"]
    )
    checkpoints = by_name(spans, "checkpoint", arn)
    assert len(invocations) == booking.invocation_count >= 2  # the retry's wait suspended it once
    assert len(checkpoints) >= len(invocations)

    trace_id = tracing.trace_id(arn)
    assert {span.context.trace_id for span in (root, *invocations, *checkpoints)} == {trace_id}
    assert root.parent is None and root.context.span_id == tracing.execution_span_id(arn)
    assert (root.start_time, root.end_time) == (
        int(booking.started_at.timestamp() * 1e9),
        int(booking.ended_at.timestamp() * 1e9),
    )
    assert root.attributes["durable.status"] == "SUCCEEDED"
    for number, span in enumerate(invocations, start=1):
        assert span.attributes["durable.invocation"] == number
        assert span.context.span_id == tracing.invocation_span_id(arn, number)
        assert span.parent.span_id == root.context.span_id
        assert span.attributes["faas.name"] == "booking"
    assert [span.attributes["durable.outcome"] for span in invocations] == ["PENDING"] * (
        len(invocations) - 1
    ) + ["SUCCEEDED"]
    invocation_ids = {span.context.span_id for span in invocations}
    assert {span.parent.span_id for span in checkpoints} <= invocation_ids
    assert any("STEP RETRY" in span.attributes["durable.operations"] for span in checkpoints)
    for checkpoint in checkpoints:  # each inside its invocation's time
        parent = next(span for span in invocations if span.context.span_id == checkpoint.parent.span_id)
        assert parent.start_time <= checkpoint.start_time <= checkpoint.end_time <= parent.end_time


def test_a_killed_sandbox_has_its_invocation_span_sent_by_the_worker(spans: InMemorySpanExporter) -> None:
    function_register(name="sleeper", handler=handler_path(sandbox_handlers.sleeper), timeout_seconds=1)
    execution = services.execution_start(function="sleeper", input_payload=json.dumps({})).execution
    pool = SandboxPool(1)
    invoker = Invoker("traces-test", SandboxRunner(pool))
    try:
        assert invoker.run_execution(execution.pk) == 1  # ran past its Timeout: killed
    finally:
        invoker.close()
        pool.close()

    (span,) = by_name(spans, "invocation", execution.arn)
    assert span.context.trace_id == tracing.trace_id(execution.arn)
    assert span.context.span_id == tracing.invocation_span_id(execution.arn, 1)
    assert span.parent.span_id == tracing.execution_span_id(execution.arn)
    assert span.attributes["durable.outcome"] == "TIMEOUT"
    assert span.status.status_code == StatusCode.ERROR
    assert "Sandbox.Timedout" in span.status.description


def test_traces_are_off_without_an_endpoint() -> None:
    assert tracing.tracer() is None
    assert tracing.checkpoint_started("arn", []) is None
