"""Small handlers the API tests register as functions."""

from __future__ import annotations

from typing import Any

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import InvokeConfig


@durable_execution
def greet(event: dict, context: DurableContext) -> dict:
    greeting = context.step(lambda _: f"hello {event.get('name', 'world')}", name="greet")
    return {"greeting": greeting}


@durable_execution
def approval(event: dict, context: DurableContext) -> dict:
    callback = context.create_callback(name="approval")
    context.step(lambda _: "asked", name="ask")
    return {"answer": callback.result()}


@durable_execution
def invokes_for_tenant(event: dict, context: DurableContext) -> dict:
    """A chained invoke scoped to the tenant the input names."""
    config = InvokeConfig[dict, dict](tenant_id=event["tenant"])
    return {"child": context.invoke(event["target"], {"name": "tenant"}, name="call", config=config)}


class OrderRejected(Exception):
    pass


@durable_execution
def rejects(event: dict, context: DurableContext) -> dict:
    context.step(lambda _: "checked", name="check")
    raise OrderRejected(f"order {event.get('order', '?')} rejected")


def echo(event: Any, context: Any) -> dict:
    return {"echo": event, "function": context.function_name}


def boom(event: Any, context: Any) -> dict:
    raise RuntimeError("plain function failed")
