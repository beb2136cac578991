"""Function chaining: an orchestrator invokes four other functions.

Demonstrates ``context.invoke``. The orchestrator calls the customer,
inventory, payment and fulfilment functions in turn; each result is
checkpointed as a CHAINED_INVOKE operation, so a replay does not call them
again. Two targets are durable functions with their own steps and retries
(``chain-customer``, ``chain-payment``); two are plain functions that run
once per invoke (``chain-inventory``, ``chain-fulfilment``). A failed
payment releases the reservation through a second invoke of the inventory
function.

Orchestrator input (all optional): ``order_id``, ``customer_id``, ``items``,
``shipping_address``, ``card_declined``, ``faults``, ``max_attempts``,
``retry_delay_seconds`` (the last four are passed on to the targets).
Each target also runs on its own with ``{}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_durable_execution_sdk_python import (
    DurableContext,
    InvokeError,
    StepContext,
    durable_execution,
    durable_step,
)

from examples.inputs import (
    as_event,
    card_token,
    int_field,
    key_field,
    known_items,
    text_field,
)
from examples.policies import money_step, retrying_step
from examples.services import (
    Customers,
    Email,
    Faults,
    Fulfilment,
    Inventory,
    Payments,
    Shipping,
    price_items,
    short_id,
)

ORCHESTRATOR = "function-chaining"
CUSTOMER_FUNCTION = "chain-customer"
INVENTORY_FUNCTION = "chain-inventory"
PAYMENT_FUNCTION = "chain-payment"
FULFILMENT_FUNCTION = "chain-fulfilment"

# Input fields the orchestrator hands on to every target unchanged.
SHARED_FIELDS = ("faults", "card_declined", "max_attempts", "retry_delay_seconds")
DEFAULT_ADDRESS = "742 Evergreen Terrace, Springfield"


# --- orchestrator --------------------------------------------------------------------


@dataclass(frozen=True)
class ChainOrder:
    order_id: str
    customer_id: str
    items: list[dict[str, Any]]
    address: str
    shared: dict[str, Any]  # input fields every target receives

    def payload(self, **fields: Any) -> dict[str, Any]:
        """A target's input: the order id, the shared fields, and ``fields``."""
        return {"order_id": self.order_id, **self.shared, **fields}


def read_order(event: dict[str, Any], context: DurableContext) -> ChainOrder:
    Faults.from_input(event)  # fail fast on a bad fault plan, before any invoke
    return ChainOrder(
        order_id=key_field(event, "order_id", context, "order"),
        customer_id=text_field(event, "customer_id", "cust-1001"),
        items=known_items(event),
        address=text_field(event, "shipping_address", DEFAULT_ADDRESS),
        shared={name: event[name] for name in SHARED_FIELDS if name in event},
    )


@durable_execution
def handler(event: dict[str, Any] | None, context: DurableContext) -> dict[str, Any]:
    """Invoke customer, inventory, payment and fulfilment; returns the combined order."""
    order = read_order(as_event(event), context)
    customer = context.invoke(
        CUSTOMER_FUNCTION, order.payload(customer_id=order.customer_id), name="get-customer"
    )
    reserve = order.payload(action="reserve", items=order.items)
    reservation = context.invoke(INVENTORY_FUNCTION, reserve, name="reserve-inventory")
    charge = order.payload(amount_cents=reservation["amount_cents"])
    try:
        payment = context.invoke(PAYMENT_FUNCTION, charge, name="charge-payment")
    except InvokeError as error:
        return release_stock(context, order, reservation["reservation_id"], error)
    fulfil = order.payload(items=order.items, email=customer["email"], shipping_address=order.address)
    shipment = context.invoke(FULFILMENT_FUNCTION, fulfil, name="fulfil-order")
    return {
        "status": "completed",
        "order_id": order.order_id,
        "customer": {"customer_id": customer["customer_id"], "tier": customer["tier"]},
        "reservation_id": reservation["reservation_id"],
        "charge_id": payment["charge_id"],
        "amount_cents": payment["amount_cents"],
        "shipment_id": shipment["shipment_id"],
        "tracking_number": shipment["tracking_number"],
    }


def release_stock(
    context: DurableContext, order: ChainOrder, reservation_id: str, error: InvokeError
) -> dict[str, Any]:
    """The payment function failed: give the stock back through the inventory function."""
    release = order.payload(action="release", reservation_id=reservation_id)
    context.invoke(INVENTORY_FUNCTION, release, name="release-inventory")
    return {
        "status": "payment_failed",
        "order_id": order.order_id,
        "reason": error.message,
        "released_reservation": reservation_id,
    }


# --- chain-customer (durable) --------------------------------------------------------


@durable_step
def lookup_customer(step: StepContext, customer_id: str, faults: Faults) -> dict[str, Any]:
    return Customers(faults).lookup(customer_id)


@durable_step
def assess_risk(step: StepContext, customer: dict[str, Any]) -> dict[str, Any]:
    # Deterministic "score" so the demo is repeatable.
    score = int(short_id("risk", customer["customer_id"])[-2:], 16) % 100
    return {"risk_score": score, "approved": score < 90 or customer["tier"] == "gold"}


@durable_execution
def customer_handler(event: dict[str, Any] | None, context: DurableContext) -> dict[str, Any]:
    """Look up the customer and assess risk, each a step of this child execution."""
    event = as_event(event)
    customer_id = text_field(event, "customer_id", "cust-1001")
    faults = Faults.from_input(event)
    customer = context.step(
        lookup_customer(customer_id, faults), name="lookup-customer", config=retrying_step(event)
    )
    risk = context.step(assess_risk(customer), name="assess-risk")
    return {**customer, **risk}


# --- chain-inventory (plain) -----------------------------------------------------------


def inventory_handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    """Reserve or release stock. A plain function: one call, no checkpoints, no retries."""
    event = as_event(event)
    order_id = text_field(event, "order_id", plain_key(context, "order"))
    inventory = Inventory(Faults.from_input(event))
    if event.get("action", "reserve") == "release":
        return inventory.release(order_id, text_field(event, "reservation_id", short_id("res", order_id)))
    items = known_items(event)
    reservation = inventory.reserve(order_id, items)
    return {**reservation, "amount_cents": price_items(items)}


# --- chain-payment (durable) -----------------------------------------------------------


@durable_step
def charge_card(
    step: StepContext, order_id: str, amount_cents: int, card: str, faults: Faults
) -> dict[str, Any]:
    return Payments(faults).charge(order_id, amount_cents, card)


@durable_execution
def payment_handler(event: dict[str, Any] | None, context: DurableContext) -> dict[str, Any]:
    """Charge the card in a step with backoff retries on transient failures."""
    event = as_event(event)
    order_id = key_field(event, "order_id", context, "order")
    amount = int_field(event, "amount_cents", 1000, minimum=1)
    charge = charge_card(order_id, amount, card_token(event), Faults.from_input(event))
    return context.step(charge, name="charge-card", config=money_step(event))


# --- chain-fulfilment (plain) ----------------------------------------------------------


def fulfilment_handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    """Pack, ship and e-mail the confirmation. A plain function, run once per invoke."""
    event = as_event(event)
    order_id = text_field(event, "order_id", plain_key(context, "order"))
    items = known_items(event)
    faults = Faults.from_input(event)
    package = Fulfilment(faults).pack(order_id, items)
    address = text_field(event, "shipping_address", DEFAULT_ADDRESS)
    shipment = Shipping(faults).create_shipment(order_id, address, items)
    email = text_field(event, "email", f"{order_id}@example.com")
    Email(faults).send(email, "order-shipped", order_id, tracking_number=shipment["tracking_number"])
    return {"package_id": package["package_id"], **shipment}


def plain_key(context: Any, prefix: str) -> str:
    """A default key for a plain function run on its own: its request id."""
    request_id = getattr(context, "aws_request_id", None) or "manual"
    return f"{prefix}-{str(request_id)[:8]}"
