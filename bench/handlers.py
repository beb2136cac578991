"""Handlers the benchmarks run: no-op steps, so what is measured is the engine."""

from __future__ import annotations

import time
from typing import Any

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration


@durable_execution
def steps(event: dict[str, Any], context: DurableContext) -> int:
    """``event["steps"]`` sequential no-op steps."""
    total = 0
    for index in range(int(event.get("steps", 20))):
        total += context.step(lambda _, index=index: index, name=f"step-{index}")
    return total


@durable_execution
def timer(event: dict[str, Any], context: DurableContext) -> float:
    """Wait ``event["seconds"]``, then one step that returns when the handler resumed (epoch s)."""
    context.wait(Duration.from_seconds(int(event.get("seconds", 30))), name="timer")
    return float(context.step(lambda _: time.time(), name="resumed"))


@durable_execution
def callbacks(event: dict[str, Any], context: DurableContext) -> int:
    """``event["count"]`` callbacks in turn; after each, a step records when it resumed."""
    for index in range(int(event.get("count", 10))):
        context.create_callback(name=f"cb-{index}").result()
        context.step(lambda _: time.time(), name=f"resumed-{index}")
    return int(event.get("count", 10))
