"""Catalogue handlers: create_callback, wait_for_callback, stop and pause/resume.

The cases drive these from outside (CallbackSucceed/CallbackFail/...), naming
the CALLBACK operation. ``wait_for_callback(name=X)`` names its CALLBACK op
``"X create callback id"``.
"""

from __future__ import annotations

from aws_durable_execution_sdk_python import (
    CallbackError,
    DurableContext,
    durable_execution,
)
from aws_durable_execution_sdk_python.config import (
    CallbackConfig,
    Duration,
    WaitForCallbackConfig,
)
from aws_durable_execution_sdk_python.retries import RetryPresets
from aws_durable_execution_sdk_python.serdes import JsonSerDes
from aws_durable_execution_sdk_python.types import WaitForCallbackContext

from tests.catalogue._support import CatalogueError, describe


@durable_execution
def callback_success(event: dict, context: DurableContext) -> dict:
    """create_callback completed by SendCallbackSuccess; the raw result string comes back."""
    callback = context.create_callback(name="approval")
    context.step(lambda _: f"notify {event['approver']}", name="notify")
    answer = callback.result()
    done = context.step(lambda _: "processed", name="after-approval")
    return {"answer": answer, "done": done}


@durable_execution
def callback_failure(event: dict, context: DurableContext) -> dict:
    """create_callback completed by SendCallbackFailure: CallbackExternalError is caught."""
    callback = context.create_callback(name="approval")
    try:
        callback.result()
    except CallbackError as err:
        return {"error": describe(err)}
    return {"error": None}


@durable_execution
def callback_failure_uncaught(event: dict, context: DurableContext) -> dict:
    """A failed callback left uncaught fails the execution."""
    callback = context.create_callback(name="approval")
    return {"answer": callback.result()}


@durable_execution
def callback_timeout(event: dict, context: DurableContext) -> dict:
    """A callback with a 1 s timeout and no answer: CallbackTimeoutError (Callback.Timeout)."""
    callback = context.create_callback(
        name="approval", config=CallbackConfig(timeout=Duration.from_seconds(1))
    )
    try:
        callback.result()
    except CallbackError as err:
        return {"error": describe(err)}
    return {"error": None}


@durable_execution
def callback_heartbeat_timeout(event: dict, context: DurableContext) -> dict:
    """A callback with a 1 s heartbeat timeout and no heartbeat: times out on heartbeat."""
    config = CallbackConfig(timeout=Duration.from_minutes(10), heartbeat_timeout=Duration.from_seconds(1))
    callback = context.create_callback(name="worker", config=config)
    try:
        callback.result()
    except CallbackError as err:
        return {"error": describe(err)}
    return {"error": None}


@durable_execution
def callback_heartbeat_then_success(event: dict, context: DurableContext) -> dict:
    """A callback with a heartbeat timeout that gets a heartbeat and then succeeds."""
    config = CallbackConfig(timeout=Duration.from_minutes(10), heartbeat_timeout=Duration.from_seconds(20))
    callback = context.create_callback(name="worker", config=config)
    return {"answer": callback.result()}


@durable_execution
def callback_two_out_of_order(event: dict, context: DurableContext) -> dict:
    """Two callbacks created up front and answered in reverse order."""
    first = context.create_callback(name="first")
    second = context.create_callback(name="second")
    return {"first": first.result(), "second": second.result()}


@durable_execution
def callback_json_subtype(event: dict, context: DurableContext) -> dict:
    """A callback with a custom SubType and JsonSerDes, so the result is parsed as JSON."""
    config = CallbackConfig(serdes=JsonSerDes(), sub_type="Approval")
    callback = context.create_callback(name="typed", config=config)
    answer = callback.result()
    return {"approved": answer["approved"], "by": answer["by"]}


@durable_execution
def callback_in_child(event: dict, context: DurableContext) -> dict:
    """A callback created and awaited inside a child context."""

    def body(child: DurableContext) -> str:
        callback = child.create_callback(name="inner-approval")
        return callback.result()

    return {"answer": context.run_in_child_context(body, name="approval-scope")}


def _submit_ok(callback_id: str, ctx: WaitForCallbackContext) -> None:
    """Submitter that hands the id to nobody (deterministic: the case answers it)."""
    ctx.logger.info("submitted")


def _submit_fails(callback_id: str, ctx: WaitForCallbackContext) -> None:
    """Submitter that fails."""
    raise CatalogueError("submitter could not reach the partner")


@durable_execution
def wait_for_callback_success(event: dict, context: DurableContext) -> dict:
    """wait_for_callback answered with success."""
    answer = context.wait_for_callback(_submit_ok, name="partner")
    return {"answer": answer}


@durable_execution
def wait_for_callback_failure(event: dict, context: DurableContext) -> dict:
    """wait_for_callback answered with failure: CallbackExternalError."""
    try:
        context.wait_for_callback(_submit_ok, name="partner")
    except CallbackError as err:
        return {"error": describe(err)}
    return {"error": None}


@durable_execution
def wait_for_callback_submitter_fails(event: dict, context: DurableContext) -> dict:
    """wait_for_callback whose submitter fails (no retries): CallbackSubmitterError."""
    config = WaitForCallbackConfig(retry_strategy=RetryPresets.none())
    try:
        context.wait_for_callback(_submit_fails, name="partner", config=config)
    except CallbackError as err:
        return {"error": describe(err)}
    return {"error": None}


@durable_execution
def wait_for_callback_timeout(event: dict, context: DurableContext) -> dict:
    """wait_for_callback with a 1 s timeout and no answer: CallbackTimeoutError."""
    config = WaitForCallbackConfig(timeout=Duration.from_seconds(1))
    try:
        context.wait_for_callback(_submit_ok, name="partner", config=config)
    except CallbackError as err:
        return {"error": describe(err)}
    return {"error": None}


@durable_execution
def stop_while_callback_pending(event: dict, context: DurableContext) -> str:
    """Stopped from outside while a callback is pending: execution STOPPED."""
    context.step(lambda _: "prepared", name="prepare")
    callback = context.create_callback(name="never-answered")
    return callback.result()


@durable_execution
def pause_resume_callback(event: dict, context: DurableContext) -> dict:
    """Paused while a callback is pending, callback answered while paused, then resumed."""
    context.step(lambda _: "prepared", name="prepare")
    callback = context.create_callback(name="held")
    answer = callback.result()
    tail = context.step(lambda _: "after-resume", name="finish")
    return {"answer": answer, "tail": tail}
