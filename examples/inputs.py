"""Reading the execution input of the demo functions.

Every field is optional, so ``start NAME`` with ``{}`` runs the demo with
meaningful defaults, while tests pass small sizes and short timeouts. Bad
values raise ``ValueError`` or ``TypeError`` before any step runs: the execution fails the
same way on every replay.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from aws_durable_execution_sdk_python import DurableContext

from examples.services import CATALOGUE, DECLINED_CARD

DEFAULT_ITEMS: tuple[dict[str, Any], ...] = (
    {"sku": "sku-widget", "quantity": 2},
    {"sku": "sku-gadget", "quantity": 1},
)


def as_event(event: object) -> dict[str, Any]:
    """The input as a dict; ``null`` or no input means all defaults."""
    if event is None:
        return {}
    if not isinstance(event, Mapping):
        raise TypeError("the input must be a JSON object")
    return dict(event)


def execution_key(context: DurableContext, prefix: str) -> str:
    """A default business key unique to this execution and stable across replays.

    Derived from the execution ARN, so two demo runs never share an order id
    (and so never share fault-injection attempt counts) while every replay of
    one execution sees the same id.
    """
    arn = context.execution_context.durable_execution_arn
    return f"{prefix}-{hashlib.sha256(arn.encode()).hexdigest()[:8]}"


def key_field(event: Mapping[str, Any], name: str, context: DurableContext, prefix: str) -> str:
    """``event[name]`` if given, else a per-execution default."""
    value = event.get(name)
    if value is None:
        return execution_key(context, prefix)
    return text_field(event, name, "")


def text_field(event: Mapping[str, Any], name: str, default: str) -> str:
    value = event.get(name, default)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


def int_field(
    event: Mapping[str, Any],
    name: str,
    default: int,
    *,
    minimum: int = 0,
    maximum: int | None = None,
) -> int:
    value = event.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer")
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and <= {maximum}"
        raise ValueError(f"{name} must be >= {minimum}{upper}")
    return value


def bool_field(event: Mapping[str, Any], name: str, default: bool) -> bool:
    value = event.get(name, default)
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be true or false")
    return value


def int_list_field(event: Mapping[str, Any], name: str) -> list[int]:
    value = event.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{name} must be a list of integers")
    return list(value)


def order_items(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``event["items"]`` checked for shape only; business rules are the caller's."""
    items = event.get("items", list(DEFAULT_ITEMS))
    if not isinstance(items, Sequence) or isinstance(items, str):
        raise TypeError("items must be a list of {sku, quantity}")
    for item in items:
        if not isinstance(item, Mapping) or "sku" not in item or "quantity" not in item:
            raise ValueError("each item needs a sku and a quantity")
    return [{"sku": item["sku"], "quantity": item["quantity"]} for item in items]


def known_items(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Order items whose skus exist and quantities are positive integers."""
    items = order_items(event)
    for item in items:
        if item["sku"] not in CATALOGUE:
            raise ValueError(f"unknown sku {item['sku']!r}")
        if (
            isinstance(item["quantity"], bool)
            or not isinstance(item["quantity"], int)
            or item["quantity"] < 1
        ):
            raise ValueError("quantity must be a positive integer")
    return items


def card_token(event: Mapping[str, Any]) -> str:
    """The card to charge; ``"card_declined": true`` picks one the issuer refuses."""
    return DECLINED_CARD if bool_field(event, "card_declined", False) else "tok_visa"
