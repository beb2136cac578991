"""Small handlers for the console tests (no demo services, no approvals app)."""

from __future__ import annotations

from typing import Any

from aws_durable_execution_sdk_python import CallbackError, DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, WaitForCallbackConfig
from aws_durable_execution_sdk_python.types import WaitForCallbackContext


def _hand_to_nobody(callback_id: str, ctx: WaitForCallbackContext) -> None:
    ctx.logger.info("waiting for a person")


@durable_execution
def approval(event: dict[str, Any], context: DurableContext) -> dict[str, Any]:
    """Prepare, wait (up to an hour) for a person's decision, then finish with it."""
    prepared = context.step(lambda _: {"doc": event.get("doc", "d")}, name="prepare")
    config = WaitForCallbackConfig(timeout=Duration.from_seconds(3600))
    try:
        decision = context.wait_for_callback(_hand_to_nobody, name="decision", config=config)
    except CallbackError as err:
        return {"prepared": prepared, "failed": str(err)}
    return {"prepared": prepared, "decision": decision}


@durable_execution
def wait_a_minute(event: dict[str, Any], context: DurableContext) -> str:
    """A step, then a timer: RUNNING until the clock moves."""
    context.step(lambda _: "ok", name="before")
    context.wait(Duration.from_seconds(60), name="a-minute")
    return "done"


def plain(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A plain (not durable) callable."""
    return {"echo": event}


NOT_CALLABLE = 42
