"""Short fault-tolerant process: a hotel booking with an optional room upgrade.

Demonstrates step retries with exponential backoff. Every service call is a
step that retries transient failures (six attempts by default, starting at one
second and doubling), so the booking finishes although individual calls fail.
Each completed step is checkpointed, so a retry of the upgrade never reserves
a second room or takes a second deposit. When a call keeps failing past its
attempts, the execution fails with that step's error.

Input (all optional): ``booking_id``, ``guest``, ``email``, ``hotel``,
``room_type`` (standard, deluxe, suite), ``nights`` (default 3),
``upgrade_to`` (default "deluxe"; null for none), ``card_declined``,
``faults`` (e.g. {"booking.reserve_room": 2, "booking.upgrade": 1}),
``max_attempts``, ``retry_delay_seconds`` (default 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_durable_execution_sdk_python import (
    DurableContext,
    StepContext,
    durable_execution,
    durable_step,
)
from aws_durable_execution_sdk_python.config import StepConfig

from examples.inputs import as_event, card_token, int_field, key_field, text_field
from examples.policies import money_step, retrying_step
from examples.services import ROOM_RATES, Bookings, Email, Faults, Payments

ATTEMPTS = 6
FIRST_DELAY_SECONDS = 1


@dataclass(frozen=True)
class Booking:
    booking_id: str
    guest: str
    email: str
    hotel: str
    room_type: str
    nights: int
    upgrade_to: str | None
    card: str
    faults: Faults


def room_type_field(event: dict[str, Any], name: str, default: str | None) -> str | None:
    value = event.get(name, default)
    if value is not None and value not in ROOM_RATES:
        raise ValueError(f"{name} must be one of {', '.join(ROOM_RATES)}")
    return value


def read_booking(event: dict[str, Any], context: DurableContext) -> Booking:
    room_type = room_type_field(event, "room_type", "standard") or "standard"
    upgrade_to = room_type_field(event, "upgrade_to", "deluxe")
    return Booking(
        booking_id=key_field(event, "booking_id", context, "bkg"),
        guest=text_field(event, "guest", "Ada Lovelace"),
        email=text_field(event, "email", "ada@example.com"),
        hotel=text_field(event, "hotel", "Grand Budapest Hotel"),
        room_type=room_type,
        nights=int_field(event, "nights", 3, minimum=1, maximum=30),
        upgrade_to=upgrade_to if upgrade_to != room_type else None,
        card=card_token(event),
        faults=Faults.from_input(event),
    )


@durable_step
def check_availability(step: StepContext, booking: Booking) -> dict[str, Any]:
    return Bookings(booking.faults).availability(
        booking.booking_id, booking.hotel, booking.room_type, booking.nights
    )


@durable_step
def reserve_room(step: StepContext, booking: Booking) -> dict[str, Any]:
    return Bookings(booking.faults).reserve_room(
        booking.booking_id, booking.hotel, booking.room_type, booking.nights
    )


@durable_step
def take_deposit(step: StepContext, booking: Booking, amount_cents: int) -> dict[str, Any]:
    return Payments(booking.faults).charge(booking.booking_id, amount_cents, booking.card)


@durable_step
def apply_upgrade(step: StepContext, booking: Booking, room_type: str) -> dict[str, Any]:
    return Bookings(booking.faults).upgrade(booking.booking_id, room_type)


@durable_step
def send_confirmation(step: StepContext, booking: Booking, room: int, room_type: str) -> dict[str, Any]:
    email = Email(booking.faults)
    return email.send(
        booking.email, "booking-confirmation", booking.booking_id, room=room, room_type=room_type
    )


def step_configs(event: dict[str, Any]) -> tuple[StepConfig, StepConfig]:
    """(ordinary step, money step), both with this scenario's patient backoff."""
    options = {"default_attempts": ATTEMPTS, "default_delay": FIRST_DELAY_SECONDS}
    return retrying_step(event, **options), money_step(event, **options)


@durable_execution
def handler(event: dict[str, Any] | None, context: DurableContext) -> dict[str, Any]:
    """Book the room, take the deposit, upgrade, confirm; returns attempts per step."""
    event = as_event(event)
    booking = read_booking(event, context)
    retrying, money = step_configs(event)
    quote = context.step(check_availability(booking), name="check-availability", config=retrying)
    room = context.step(reserve_room(booking), name="reserve-room", config=retrying)
    deposit_step = take_deposit(booking, quote["nightly_rate_cents"])
    deposit = context.step(deposit_step, name="take-deposit", config=money)
    attempts = {
        "check-availability": quote["attempt"],
        "reserve-room": room["attempt"],
        "take-deposit": deposit["attempt"],
    }
    room_type = booking.room_type
    if booking.upgrade_to is not None:
        upgrade = apply_upgrade(booking, booking.upgrade_to)
        upgraded = context.step(upgrade, name="apply-upgrade", config=retrying)
        room_type, attempts["apply-upgrade"] = upgraded["room_type"], upgraded["attempt"]
    confirm = send_confirmation(booking, room["room"], room_type)
    message = context.step(confirm, name="send-confirmation", config=retrying)
    return {
        "status": "confirmed",
        "booking_id": booking.booking_id,
        "guest": booking.guest,
        "hotel": booking.hotel,
        "room": room["room"],
        "room_type": room_type,
        "upgraded": room_type != booking.room_type,
        "nights": booking.nights,
        "confirmation": room["confirmation"],
        "deposit_cents": deposit["amount_cents"],
        "charge_id": deposit["charge_id"],
        "confirmation_message_id": message["message_id"],
        "attempts": attempts,
    }
