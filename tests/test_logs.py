"""Structured logs (issue 13): ``DURABLE_LOG_FORMAT=json`` writes one JSON object per line.

In-process: the formatter and the invocation filter as ``settings.LOGGING`` wires
them. End to end: a worker process with ``DURABLE_LOG_FORMAT=json`` runs a handler
that logs from its own thread, from a thread it starts (the SDK checkpoints from
threads like that) and inside a step; every line the worker and its sandbox child
write parses, and the handler's lines carry the execution's ARN, invocation number,
function and the worker thread that ran it.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from durable_console.logs import JsonFormatter
from executions import log_context, tracing
from executions.engine.functions import function_register
from executions.log_context import InvocationFilter, InvocationLog
from executions.models import Execution
from tests.conftest import SpawnedProcess
from tests.engine_driver import handler_path, start
from tests.observability_handlers import logs_from_threads


@pytest.fixture
def json_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """A logger wired like settings.LOGGING's console handler with the JSON format."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(InvocationFilter())
    logger = logging.getLogger("tests.json_lines")
    logger.addHandler(handler)
    logger.propagate = False
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.propagate = True


def test_a_json_line_carries_the_invocation_it_was_logged_in(json_lines: Callable[[], list]) -> None:
    logger = logging.getLogger("tests.json_lines")
    context = InvocationLog("arn:aws:lambda:x:1:function:f:$LATEST/durable-execution/n/i", 3, "f", "h:1:2")
    with log_context.invocation(context):
        logger.warning("inside %s", "it")
    logger.warning("outside")
    try:
        raise ValueError("two\nlines")
    except ValueError:
        logger.exception("failed")

    inside, outside, failed = json_lines()
    assert inside["message"] == "inside it"
    assert (inside["execution_arn"], inside["invocation"], inside["function"], inside["worker"]) == (
        context.execution_arn,
        3,
        "f",
        "h:1:2",
    )
    assert (inside["level"], inside["logger"]) == ("WARNING", "tests.json_lines")
    assert inside["time"].endswith("+00:00") and isinstance(inside["pid"], int)
    assert "execution_arn" not in outside  # fields that do not apply are left out
    assert "ValueError: two\nlines" in failed["exception"]  # one line of JSON all the same


def test_with_traces_on_a_line_names_its_trace_and_span(json_lines: Callable[[], list]) -> None:
    tracing.use_exporter(InMemorySpanExporter(), batch=False)
    try:
        with log_context.invocation(InvocationLog("arn-t", 2, "f", "w")):
            logging.getLogger("tests.json_lines").warning("traced")
    finally:
        tracing.stop()
    (line,) = json_lines()
    assert line["trace_id"] == format(tracing.trace_id("arn-t"), "032x")
    assert line["span_id"] == format(tracing.invocation_span_id("arn-t", 2), "016x")


def test_a_process_wide_context_reaches_other_threads(json_lines: Callable[[], list]) -> None:
    logger = logging.getLogger("tests.json_lines")
    with log_context.invocation(InvocationLog("arn-1", 1, "f", "w"), process_wide=True):
        thread = threading.Thread(target=logger.warning, args=("from a thread",))
        thread.start()
        thread.join()
    (line,) = json_lines()
    assert line["execution_arn"] == "arn-1"


def test_the_default_format_is_readable_text() -> None:
    assert settings.DURABLE_LOG_FORMAT == "text"
    assert settings.LOGGING["handlers"]["console"]["formatter"] == "plain"


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_worker_writes_json_lines_with_the_execution_arn(
    requires_postgresql: None, redis_url: str, spawn_process: Callable[..., SpawnedProcess]
) -> None:
    function_register(name="logs-from-threads", handler=handler_path(logs_from_threads))
    worker = spawn_process(
        [sys.executable, "manage.py", "durable", "worker", "--pool", "threads", "--concurrency", "1"],
        env={"DURABLE_LOG_FORMAT": "json"},
        name="worker",
    )
    execution = start("logs-from-threads", {"key": "json-1"})
    done = worker.wait_until(
        lambda: (e := Execution.objects.get(pk=execution.pk)).is_terminal and e, 60, "the execution"
    )
    assert done.status == "SUCCEEDED", done.error
    worker.wait_for_log("step line for json-1")

    lines = [json.loads(line) for line in worker.log_text().splitlines() if line.strip()]
    ours = [line for line in lines if line["logger"] == "tests.observability"]
    assert [line["message"] for line in ours] == [
        "handler line for json-1",
        "thread line for json-1",
        "step line for json-1\nwith a second line",
    ]
    for line in ours:
        assert line["execution_arn"] == execution.arn
        assert line["invocation"] == 1
        assert line["function"] == "logs-from-threads"
        assert line["worker"].startswith(f"{socket.gethostname()}:{worker.pid}:")
        assert line["pid"] != worker.pid  # logged in the sandbox child
