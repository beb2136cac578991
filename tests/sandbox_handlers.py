"""Handlers that misbehave, for the sandbox tests: hang, crash, eat memory, read the env."""

from __future__ import annotations

import os
import time
from typing import Any

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, StepConfig, StepSemantics
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy


@durable_execution
def sleeper(event: Any, context: DurableContext) -> str:
    """Hangs outside any step: only the function's Timeout ends it."""
    while True:
        time.sleep(3600)


@durable_execution
def crash_once(event: dict[str, Any], context: DurableContext) -> str:
    """Exits the process on its first invocation (a marker file remembers), then succeeds."""
    marker = event["marker"]
    if not os.path.exists(marker):
        with open(marker, "w") as handle:
            handle.write("crashed")
        os._exit(1)
    return context.step(lambda _: "survived", name="after-crash")


@durable_execution
def memory_hog(event: dict[str, Any], context: DurableContext) -> int:
    """Touches ``event["mb"]`` MB of memory outside any step."""
    hoard = b"x" * (event["mb"] * 1024 * 1024)
    return len(hoard)


@durable_execution
def huge_allocation(event: dict[str, Any], context: DurableContext) -> int:
    """Asks for more address space than the sandbox allows, inside a step."""
    return context.step(lambda _: len(bytearray(event["gb"] * 1024**3)), name="allocate")


@durable_execution
def read_environment(event: dict[str, Any], context: DurableContext) -> str | None:
    return context.step(lambda _: os.environ.get(event["name"]), name="read")


@durable_execution
def quick(event: Any, context: DurableContext) -> str:
    return context.step(lambda _: "done", name="quick")


def plain_environment(event: dict[str, Any], context: Any) -> str | None:
    return os.environ.get(event["name"])


def plain_sleeper(event: Any, context: Any) -> None:
    time.sleep(3600)


@durable_execution
def slow_at_most_once(event: dict[str, Any], context: DurableContext) -> dict[str, Any]:
    """An AT_MOST_ONCE step whose first attempt outlives the function's Timeout.

    The marker file counts attempts that began; only the first one hangs.
    """
    marker = event["marker"]

    def charge(step: StepContext) -> int:
        with open(marker, "a") as handle:
            handle.write("started\n")
        if step.attempt <= 1:
            time.sleep(3600)
        return step.attempt

    retry = create_retry_strategy(RetryStrategyConfig(max_attempts=3, initial_delay=Duration.from_seconds(1)))
    config = StepConfig(step_semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY, retry_strategy=retry)
    return {"attempt": context.step(charge, name="charge", config=config)}
