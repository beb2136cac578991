"""Traces (OpenTelemetry), off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (docs/operations.md).

One trace per execution. Its trace id is derived from the execution's ARN, so
every invocation, whichever process ran it and whenever, lands in the same trace
and an operator sees an execution's invocations side by side on one timeline:

- ``execution``: the root, from start to end, sent by the process that ends it;
- ``invocation``: one per handler run, a child of ``execution``, sent by the sandbox
  child that ran it (by the supervising worker instead when the sandbox was killed:
  timeout, crash, out of memory, lost lease);
- ``checkpoint``: one per checkpoint, a child of its invocation.

The ids of ``execution`` and ``invocation`` spans are derived too (from the ARN and
the invocation number), so a span can name its parent before the parent is sent.
Every span carries ``durable.execution_arn``. Spans go out over OTLP/HTTP in
batches; the standard ``OTEL_*`` variables (headers, service name, ...) apply.
When traces are off, a checkpoint pays one attribute check.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

SERVICE_NAME = "durable-console"
ARN = "durable.execution_arn"

_tracer: Any = None
_configured = False
# The id the next span gets, when it must be one derived from the execution (DerivedIds).
_next_ids: ContextVar[tuple[int | None, int] | None] = ContextVar("durable_next_span_ids", default=None)
# The invocation running in this sandbox child: its checkpoints' parent. Process-wide,
# since the SDK checkpoints from threads of its own.
_invocation: Any = None


def tracer() -> Any:
    """The tracer, or None when traces are off."""
    global _configured
    if not _configured:
        _configured = True
        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            use_exporter(OTLPSpanExporter())
    return _tracer


def use_exporter(exporter: Any, *, batch: bool = True) -> None:
    """Send spans to ``exporter`` from now on (tests: the SDK's in-memory one, ``batch=False``)."""
    global _tracer, _configured
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME", SERVICE_NAME)
    provider = TracerProvider(resource=Resource.create({"service.name": name}), id_generator=_derived_ids())
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    _tracer = provider.get_tracer("durable_console")
    _configured = True


def stop() -> None:
    """Traces off again (tests)."""
    global _tracer
    _tracer = None


def _derived_ids() -> Any:
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class DerivedIds(RandomIdGenerator):
        """Random ids, except for the spans whose ids are derived from their execution."""

        def generate_trace_id(self) -> int:
            forced = _next_ids.get()
            return forced[0] if forced and forced[0] else super().generate_trace_id()

        def generate_span_id(self) -> int:
            forced = _next_ids.get()
            return forced[1] if forced else super().generate_span_id()

        def is_trace_id_random(self) -> bool:
            return False

    return DerivedIds()


def _hash(text: str, size: int) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:size], "big") or 1


def trace_id(arn: str) -> int:
    return _hash(f"trace:{arn}", 16)


def execution_span_id(arn: str) -> int:
    return _hash(f"execution:{arn}", 8)


def invocation_span_id(arn: str, number: int) -> int:
    return _hash(f"invocation:{arn}:{number}", 8)


def _parent(trace: int, span: int) -> Any:
    from opentelemetry import trace as api

    context = api.SpanContext(trace, span, is_remote=True, trace_flags=api.TraceFlags(api.TraceFlags.SAMPLED))
    return api.set_span_in_context(api.NonRecordingSpan(context))


def _start(name: str, *, ids: tuple[int | None, int], parent: Any, **kwargs: Any) -> Any:
    token = _next_ids.set(ids)
    try:
        return _tracer.start_span(name, context=parent, **kwargs)
    finally:
        _next_ids.reset(token)


def _ns(moment: datetime.datetime | float) -> int:
    seconds = moment.timestamp() if isinstance(moment, datetime.datetime) else moment
    return int(seconds * 1e9)


# --- spans ---------------------------------------------------------------------------------


@contextmanager
def invocation(arn: str, number: int, function: str, request_id: str) -> Iterator[Any]:
    """Around one handler run in a sandbox child; yields the span (None when traces are off)."""
    global _invocation
    if tracer() is None:
        yield None
        return
    span = _start(
        "invocation",
        ids=(None, invocation_span_id(arn, number)),
        parent=_parent(trace_id(arn), execution_span_id(arn)),
        attributes={
            ARN: arn,
            "durable.invocation": number,
            "faas.name": function,
            "faas.invocation_id": request_id,
        },
    )
    _invocation = span
    try:
        yield span
    finally:
        _invocation = None
        span.end()


def invocation_outcome(span: Any, outcome: str, error: dict[str, Any] | None = None) -> None:
    """How the invocation ended, on its span; anything but SUCCEEDED or PENDING is an error."""
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("durable.outcome", outcome)
    if outcome not in ("SUCCEEDED", "PENDING"):
        error = error or {}
        span.set_status(
            Status(StatusCode.ERROR, f"{error.get('ErrorType', outcome)}: {error.get('ErrorMessage', '')}")
        )


def failed_invocation(
    arn: str, number: int, function: str, began: float, outcome: str, error: dict[str, Any]
) -> None:
    """The span of an invocation whose sandbox was killed (it could not send its own)."""
    if tracer() is None:
        return
    span = _start(
        "invocation",
        ids=(None, invocation_span_id(arn, number)),
        parent=_parent(trace_id(arn), execution_span_id(arn)),
        attributes={ARN: arn, "durable.invocation": number, "faas.name": function},
        start_time=_ns(began),
    )
    invocation_outcome(span, outcome, error)
    span.end()


def checkpoint_started(arn: str, updates: list[dict[str, Any]]) -> Any:
    """A checkpoint span under the running invocation, or None (traces off, or no invocation)."""
    if _tracer is None or _invocation is None:
        return None
    from opentelemetry import trace as api

    operations = sorted({f"{update.get('Type')} {update.get('Action')}" for update in updates})
    return _tracer.start_span(
        "checkpoint",
        context=api.set_span_in_context(_invocation),
        attributes={ARN: arn, "durable.updates": len(updates), "durable.operations": operations},
    )


def checkpoint_ended(span: Any, error: BaseException | None = None) -> None:
    if span is None:
        return
    if error is not None:
        from opentelemetry.trace import Status, StatusCode

        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, str(error)))
    span.end()


def execution_finished(
    arn: str, status: str, started_at: datetime.datetime, ended_at: datetime.datetime
) -> None:
    """The trace's root, sent once the execution has ended (an engine observer, after commit)."""
    if tracer() is None:
        return
    from opentelemetry.context import Context

    span = _start(
        "execution",
        ids=(trace_id(arn), execution_span_id(arn)),
        parent=Context(),  # a root, whatever span may be current here
        attributes={ARN: arn, "durable.status": status, "faas.name": arn.split(":", 7)[6]},
        start_time=_ns(started_at),
    )
    if status != "SUCCEEDED":
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, status))
    span.end(end_time=_ns(ended_at))


def install() -> None:
    """Listen to the engine for executions that end (``ExecutionsConfig.ready``)."""
    from executions.engine import observers

    observers.add(finished=execution_finished)
