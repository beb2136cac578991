"""Multi-step order processing: validate, authorize payment, allocate inventory, fulfil.

Demonstrates:

- Validation as plain code outside any step. It depends only on the input,
  so it gives the same answer on every replay and needs no checkpoint; a
  rejected order returns before any service is touched.
- Authorize-then-capture: the card is only authorized up front and captured
  once the goods are allocated; an out-of-stock allocation voids the hold.
- Fulfilment grouped in a child context (pack, capture, ship, confirm), shown
  as one collapsible block on the timeline.
- Compensation after an interruption. Authorize and capture run at most once
  (``policies.money_step``); if a worker dies or an invocation times out in
  the middle of one, the step fails with StepInterruptedError and nobody
  knows from the checkpoint whether the card was touched. The payment
  service knows, by the order's idempotency key: an interrupted
  authorization is voided if it happened, an interrupted capture refunded if
  it happened (else the authorization is voided), and the order ends
  ``payment_interrupted`` instead of being charged twice or left on hold.

Input (all optional): ``order_id``, ``customer_email``, ``items``
([{sku, quantity}]; "sku-discontinued" is never in stock),
``shipping_address``, ``card_declined``, ``faults``, ``max_attempts``,
``retry_delay_seconds``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_durable_execution_sdk_python import (
    DurableContext,
    StepContext,
    StepError,
    durable_execution,
    durable_step,
    durable_with_child_context,
)

from examples.inputs import DEFAULT_ITEMS, as_event, card_token, key_field, text_field
from examples.policies import compensation_step, money_step, retrying_step, was_interrupted
from examples.services import (
    CATALOGUE,
    Email,
    Faults,
    Fulfilment,
    Inventory,
    Payments,
    Shipping,
    price_items,
)

MAX_LINES = 20
MAX_QUANTITY = 100
MAX_TOTAL_CENTS = 1_000_000


@dataclass(frozen=True)
class Order:
    order_id: str
    email: str
    items: list[dict[str, Any]]
    address: str
    card: str
    faults: Faults

    @property
    def amount_cents(self) -> int:
        return price_items(self.items)


# --- validation (deterministic, no step) -------------------------------------------


def validate(event: Mapping[str, Any]) -> list[str]:
    """Every reason to reject the order; empty when it may proceed."""
    items = event.get("items", list(DEFAULT_ITEMS))
    reasons = item_problems(items)
    address = event.get("shipping_address", "default")
    if not isinstance(address, str) or not address.strip():
        reasons.append("a shipping address is required")
    if not reasons and price_items(items) > MAX_TOTAL_CENTS:
        reasons.append(f"order total exceeds {MAX_TOTAL_CENTS} cents")
    return reasons


def item_problems(items: object) -> list[str]:
    if not isinstance(items, list) or not items:
        return ["the order has no items"]
    if len(items) > MAX_LINES:
        return [f"at most {MAX_LINES} order lines are allowed"]
    return [problem for item in items if (problem := item_problem(item))]


def item_problem(item: object) -> str | None:
    if not isinstance(item, Mapping):
        return "each item must be an object with sku and quantity"
    sku, quantity = item.get("sku"), item.get("quantity")
    if sku not in CATALOGUE:
        return f"unknown sku {sku!r}"
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY:
        return f"quantity of {sku} must be between 1 and {MAX_QUANTITY}"
    return None


def read_order(event: dict[str, Any], context: DurableContext) -> Order:
    order_id = key_field(event, "order_id", context, "order")
    return Order(
        order_id=order_id,
        email=text_field(event, "customer_email", f"{order_id}@example.com"),
        items=[
            {"sku": item["sku"], "quantity": item["quantity"]} for item in event.get("items", DEFAULT_ITEMS)
        ],
        address=text_field(event, "shipping_address", "221B Baker Street, London"),
        card=card_token(event),
        faults=Faults.from_input(event),
    )


# --- steps -------------------------------------------------------------------------


@durable_step
def authorize_payment(step: StepContext, order: Order) -> dict[str, Any]:
    return Payments(order.faults).authorize(order.order_id, order.amount_cents, order.card)


@durable_step
def allocate_inventory(step: StepContext, order: Order) -> dict[str, Any]:
    return Inventory(order.faults).allocate(order.order_id, order.items)


@durable_step
def void_authorization(step: StepContext, order: Order, authorization_id: str) -> dict[str, Any]:
    return Payments(order.faults).void(order.order_id, authorization_id)


@durable_step
def pack_order(step: StepContext, order: Order) -> dict[str, Any]:
    return Fulfilment(order.faults).pack(order.order_id, order.items)


@durable_step
def capture_payment(step: StepContext, order: Order, authorization: dict[str, Any]) -> dict[str, Any]:
    payments = Payments(order.faults)
    return payments.capture(order.order_id, authorization["authorization_id"], authorization["amount_cents"])


@durable_step
def void_interrupted_authorization(step: StepContext, order: Order) -> dict[str, Any]:
    """Void the authorization an interrupted step may have made; nothing if it made none."""
    payments = Payments(order.faults)
    authorization = payments.authorization_for(order.order_id)
    if authorization is None:
        return {"voided": None, "refunded": None}
    voided = payments.void(order.order_id, authorization["authorization_id"])
    return {"voided": voided["authorization_id"], "refunded": None}


@durable_step
def undo_interrupted_capture(
    step: StepContext, order: Order, authorization: dict[str, Any]
) -> dict[str, Any]:
    """Refund the capture an interrupted step made; if it made none, void the authorization."""
    payments = Payments(order.faults)
    capture = payments.capture_for(order.order_id)
    if capture is None:
        voided = payments.void(order.order_id, authorization["authorization_id"])
        return {"voided": voided["authorization_id"], "refunded": None}
    payments.refund(order.order_id, capture["capture_id"], capture["amount_cents"])
    return {"voided": None, "refunded": capture["capture_id"]}


@durable_step
def ship_order(step: StepContext, order: Order) -> dict[str, Any]:
    return Shipping(order.faults).create_shipment(order.order_id, order.address, order.items)


@durable_step
def send_confirmation(step: StepContext, order: Order, tracking_number: str) -> dict[str, Any]:
    email = Email(order.faults)
    return email.send(order.email, "order-confirmation", order.order_id, tracking_number=tracking_number)


@durable_with_child_context
def fulfil(
    context: DurableContext, event: dict[str, Any], order: Order, authorization: dict[str, Any]
) -> dict[str, Any]:
    """Pack, capture, ship and confirm: the tail of the order as one block."""
    package = context.step(pack_order(order), name="pack-order", config=retrying_step(event))
    try:
        capture = context.step(
            capture_payment(order, authorization), name="capture-payment", config=money_step(event)
        )
    except StepError as error:
        if not was_interrupted(error):
            raise
        undo = undo_interrupted_capture(order, authorization)
        undone = context.step(undo, name="undo-interrupted-capture", config=compensation_step(event))
        return {"status": "payment_interrupted", "failed_step": "capture-payment", **undone}
    shipment = context.step(ship_order(order), name="create-shipment", config=retrying_step(event))
    context.step(
        send_confirmation(order, shipment["tracking_number"]),
        name="send-confirmation",
        config=retrying_step(event),
    )
    return {
        "status": "fulfilled",
        "package_id": package["package_id"],
        "capture_id": capture["capture_id"],
        "shipment_id": shipment["shipment_id"],
        "tracking_number": shipment["tracking_number"],
        "carrier": shipment["carrier"],
    }


# --- handler -----------------------------------------------------------------------


@durable_execution
def handler(event: dict[str, Any] | None, context: DurableContext) -> dict[str, Any]:
    """Validate, then authorize, allocate and fulfil; returns which path was taken."""
    event = as_event(event)
    reasons = validate(event)
    if reasons:
        order_id = key_field(event, "order_id", context, "order")
        return {"status": "rejected", "order_id": order_id, "reasons": reasons}
    order = read_order(event, context)
    try:
        authorize = authorize_payment(order)
        authorization = context.step(authorize, name="authorize-payment", config=money_step(event))
    except StepError as error:
        if was_interrupted(error):
            return authorization_interrupted(context, event, order)
        return {"status": "payment_declined", "order_id": order.order_id, "reason": error.message}
    try:
        allocate = allocate_inventory(order)
        allocation = context.step(allocate, name="allocate-inventory", config=retrying_step(event))
    except StepError as error:
        return out_of_stock(context, event, order, authorization, error)
    fulfilment = fulfil(event, order, authorization)
    shipment = context.run_in_child_context(fulfilment, name="fulfil-order")
    if shipment["status"] != "fulfilled":
        return {"status": shipment["status"], "order_id": order.order_id, **shipment}
    return {
        "status": "fulfilled",
        "order_id": order.order_id,
        "amount_cents": order.amount_cents,
        "authorization_id": authorization["authorization_id"],
        "allocation_id": allocation["allocation_id"],
        **shipment,
    }


def authorization_interrupted(context: DurableContext, event: dict[str, Any], order: Order) -> dict[str, Any]:
    """The authorization may or may not have happened: void it if it did."""
    void = void_interrupted_authorization(order)
    undone = context.step(void, name="void-interrupted-authorization", config=compensation_step(event))
    outcome = {
        "status": "payment_interrupted",
        "order_id": order.order_id,
        "failed_step": "authorize-payment",
    }
    return {**outcome, **undone}


def out_of_stock(
    context: DurableContext,
    event: dict[str, Any],
    order: Order,
    authorization: dict[str, Any],
    error: StepError,
) -> dict[str, Any]:
    """The goods cannot be allocated: release the card hold instead of capturing it."""
    void = void_authorization(order, authorization["authorization_id"])
    context.step(void, name="void-authorization", config=money_step(event))
    return {
        "status": "out_of_stock",
        "order_id": order.order_id,
        "reason": error.message,
        "authorization_voided": authorization["authorization_id"],
    }
