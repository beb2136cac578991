"""Distributed transaction: reserve inventory, charge payment, create shipment.

Demonstrates a saga over three services, each call a checkpointed step:

- A transient payment failure retries only the payment step, with backoff.
  The replay returns the checkpointed reservation, so inventory is reserved
  exactly once however often the payment is retried.
- The charge runs at most once per attempt (see ``policies.money_step``).
- A declined card (a permanent failure) takes the compensation path: the
  reservation is released. A failed shipment refunds the charge and then
  releases the reservation, undoing the steps in reverse order.
- A charge interrupted mid-call (worker killed, invocation timed out) fails
  with StepInterruptedError: the card may or may not have been charged. The
  payment service knows by the order's key, so the charge is refunded if it
  happened, then the reservation released.

Input (all optional): ``order_id``, ``items`` ([{sku, quantity}]),
``shipping_address``, ``card_declined``, ``faults``, ``max_attempts``,
``retry_delay_seconds``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_durable_execution_sdk_python import (
    DurableContext,
    StepContext,
    StepError,
    durable_execution,
    durable_step,
)

from examples.inputs import as_event, card_token, key_field, known_items, text_field
from examples.policies import (
    COMPENSATION_ATTEMPTS,
    compensation_step,
    money_step,
    retrying_step,
    was_interrupted,
)
from examples.services import Faults, Inventory, Payments, Shipping, price_items


@dataclass(frozen=True)
class Order:
    order_id: str
    items: list[dict[str, Any]]
    address: str
    card: str
    faults: Faults

    @property
    def amount_cents(self) -> int:
        return price_items(self.items)


def read_order(event: dict[str, Any], context: DurableContext) -> Order:
    return Order(
        order_id=key_field(event, "order_id", context, "order"),
        items=known_items(event),
        address=text_field(event, "shipping_address", "1 Infinite Loop, Cupertino, CA"),
        card=card_token(event),
        faults=Faults.from_input(event),
    )


@durable_step
def reserve_inventory(step: StepContext, order: Order) -> dict[str, Any]:
    return Inventory(order.faults).reserve(order.order_id, order.items)


@durable_step
def charge_payment(step: StepContext, order: Order) -> dict[str, Any]:
    return Payments(order.faults).charge(order.order_id, order.amount_cents, order.card)


@durable_step
def create_shipment(step: StepContext, order: Order) -> dict[str, Any]:
    return Shipping(order.faults).create_shipment(order.order_id, order.address, order.items)


@durable_step
def release_inventory(step: StepContext, order: Order, reservation_id: str) -> dict[str, Any]:
    return Inventory(order.faults).release(order.order_id, reservation_id)


@durable_step
def refund_payment(step: StepContext, order: Order, charge: dict[str, Any]) -> dict[str, Any]:
    return Payments(order.faults).refund(order.order_id, charge["charge_id"], charge["amount_cents"])


@durable_step
def refund_interrupted_charge(step: StepContext, order: Order) -> dict[str, Any]:
    """Refund the charge an interrupted step may have made; nothing if it made none."""
    payments = Payments(order.faults)
    charge = payments.charge_for(order.order_id)
    if charge is None:
        return {"refunded": None}
    payments.refund(order.order_id, charge["charge_id"], charge["amount_cents"])
    return {"refunded": charge["charge_id"]}


@durable_execution
def handler(event: dict[str, Any] | None, context: DurableContext) -> dict[str, Any]:
    """Run the saga; returns what happened, including any compensation."""
    event = as_event(event)
    order = read_order(event, context)
    reservation = context.step(
        reserve_inventory(order), name="reserve-inventory", config=retrying_step(event)
    )
    try:
        charge = context.step(charge_payment(order), name="charge-payment", config=money_step(event))
    except StepError as error:
        if was_interrupted(error):
            refund = refund_interrupted_charge(order)
            context.step(refund, name="refund-interrupted-charge", config=compensation_step(event))
            undone = compensate(context, event, order, error, "charge-payment", reservation)
            return {**undone, "compensations": ["refund-interrupted-charge", *undone["compensations"]]}
        return compensate(context, event, order, error, "charge-payment", reservation)
    try:
        shipment = context.step(create_shipment(order), name="create-shipment", config=retrying_step(event))
    except StepError as error:
        return compensate(context, event, order, error, "create-shipment", reservation, charge)
    return {
        "status": "completed",
        "order_id": order.order_id,
        "reservation_id": reservation["reservation_id"],
        "charge_id": charge["charge_id"],
        "amount_cents": charge["amount_cents"],
        "payment_attempts": charge["attempt"],
        "shipment_id": shipment["shipment_id"],
        "tracking_number": shipment["tracking_number"],
    }


def compensate(
    context: DurableContext,
    event: dict[str, Any],
    order: Order,
    error: StepError,
    failed_step: str,
    reservation: dict[str, Any],
    charge: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Undo the completed steps, newest first, and describe the outcome."""
    undone: list[str] = []
    if charge is not None:
        config = money_step(event, default_attempts=COMPENSATION_ATTEMPTS)
        context.step(refund_payment(order, charge), name="refund-payment", config=config)
        undone.append("refund-payment")
    config = retrying_step(event, default_attempts=COMPENSATION_ATTEMPTS)
    context.step(
        release_inventory(order, reservation["reservation_id"]),
        name="release-inventory",
        config=config,
    )
    undone.append("release-inventory")
    return {
        "status": "compensated",
        "order_id": order.order_id,
        "failed_step": failed_step,
        "reason": error.message,
        "error_type": error.error_type,
        "compensations": undone,
    }
