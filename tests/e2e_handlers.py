"""Handlers for the worker-process tests (imported by the worker processes too)."""

from __future__ import annotations

import time
from typing import Any

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import StepConfig, StepSemantics

from examples.ledger import record


@durable_execution
def slow_steps(event: dict[str, Any], context: DurableContext) -> list[str]:
    """Checkpoints, then a slow AT_MOST_ONCE step a test can kill the worker in."""
    key = event["key"]
    done = [context.step(lambda _: "first", name="first")]

    def slow(step: StepContext) -> str:
        record("e2e", "slow-started", key, attempt=step.attempt)
        time.sleep(float(event.get("sleep", 3)))
        record("e2e", "slow-finished", key, attempt=step.attempt)
        return "slow"

    config = StepConfig(step_semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY)
    done.append(context.step(slow, name="slow", config=config))
    done.append(context.step(lambda _: "last", name="last"))
    return done


@durable_execution
def calls_slow_plain(event: dict[str, Any], context: DurableContext) -> Any:
    """Invokes the plain ``slow-plain`` function with its own input."""
    return context.invoke("slow-plain", event, name="call-slow-plain")


def slow_plain(event: dict[str, Any], context: Any) -> str:
    """A plain (non-durable) target that takes ``sleep`` seconds."""
    record("e2e", "plain-started", event["key"])
    time.sleep(float(event["sleep"]))
    record("e2e", "plain-finished", event["key"])
    return "done"
