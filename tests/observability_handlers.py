"""Handlers for the observability tests (logs, metrics, traces), registered from ``tests.*``."""

from __future__ import annotations

import logging
import threading
from typing import Any

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution

logger = logging.getLogger("tests.observability")


@durable_execution
def logs_from_threads(event: dict[str, Any], context: DurableContext) -> str:
    """Logs from the handler's thread, from a thread of its own (as the SDK's are) and in a step."""
    key = event["key"]
    logger.warning("handler line for %s", key)
    thread = threading.Thread(target=logger.warning, args=("thread line for %s", key))
    thread.start()
    thread.join()

    def step(_: StepContext) -> str:
        logger.warning("step line for %s\nwith a second line", key)
        return "stepped"

    return context.step(step, name="log-step")
