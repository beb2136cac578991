"""Deterministic simulated services for the demo functions.

Each service call appends a row to the :class:`~examples.models.LedgerEntry`
table, so the effect of a workflow can be counted from any process: a test,
the console, or a worker after a crash. Identifiers are derived from the
business key (never random), so a replayed or retried call produces the same
ids and the same amounts.

Fault injection is driven by the execution input::

    {"faults": {"payment.charge": 2, "shipping.create_shipment": "fail"}}

An integer ``n`` makes the first ``n`` attempts at that fault point raise
:class:`TransientServiceError` (the step retries); ``"fail"`` makes every
attempt raise :class:`PermanentServiceError` (no retry, failure path);
``"interrupt"`` lets the first attempt take effect (its ledger row is written)
and then ends the invocation before the step's result is checkpointed, as
when the worker is killed mid-step (:class:`SimulatedWorkerLoss`).
Attempts are counted from ledger rows keyed by the business key, not in
memory, so the count survives replays, retries and worker restarts. (Reusing
a business key in a new execution therefore continues its old count; the
default keys are derived from the execution ARN and never collide.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aws_durable_execution_sdk_python.exceptions import RetryableSerDesError

from examples.ledger import add_attempt, data, disabled_fault_points, record

PERMANENT_FAULT = "fail"
INTERRUPT_FAULT = "interrupt"

# Every place a fault can be injected, by "<service>.<operation>".
FAULT_POINTS: tuple[str, ...] = (
    "inventory.reserve",
    "inventory.release",
    "inventory.allocate",
    "payment.authorize",
    "payment.capture",
    "payment.void",
    "payment.charge",
    "payment.refund",
    "shipping.create_shipment",
    "fulfilment.pack",
    "email.send",
    "customers.lookup",
    "customers.create_account",
    "customers.update_profile",
    "customers.set_status",
    "documents.prepare",
    "documents.finalize",
    "documents.archive",
    "approvals.request",
    "source.extract",
    "warehouse.stage",
    "warehouse.load",
    "warehouse.verify",
    "records.fetch",
    "records.process",
    "records.aggregate",
    "booking.availability",
    "booking.reserve_room",
    "booking.upgrade",
)

# Price list in cents; "sku-discontinued" has no stock, for the out-of-stock path.
CATALOGUE: dict[str, int] = {
    "sku-widget": 1250,
    "sku-gadget": 4999,
    "sku-gizmo": 799,
    "sku-doohickey": 2500,
    "sku-discontinued": 1999,
}
OUT_OF_STOCK_SKUS: frozenset[str] = frozenset({"sku-discontinued"})
DECLINED_CARD = "tok_declined"
ROOM_RATES: dict[str, int] = {"standard": 12000, "deluxe": 18000, "suite": 32000}


class ServiceError(Exception):
    """Base class for failures of a simulated service."""


class TransientServiceError(ServiceError):
    """A failure worth retrying: timeout, throttling, 503."""


class PermanentServiceError(ServiceError):
    """A failure that retrying cannot fix."""


class PaymentDeclinedError(PermanentServiceError):
    """The card issuer refused the payment."""


class OutOfStockError(PermanentServiceError):
    """A requested item cannot be supplied."""


class SimulatedWorkerLoss(RetryableSerDesError):
    """The invocation ends after a call took effect and before its step was checkpointed.

    What a killed worker or a timed-out invocation does to a step, reproduced in
    any runner (a real kill needs a process to kill). The SDK lets exactly this
    error family leave a step body without checkpointing the step: the
    invocation fails and is retried, and an AT_MOST_ONCE step, whose START is
    already checkpointed, replays as interrupted (``StepInterruptedError``).
    """


# --- ids -----------------------------------------------------------------------


def short_id(prefix: str, *parts: object) -> str:
    """A stable identifier derived from ``parts``: the same call, the same id."""
    digest = hashlib.sha256(":".join(str(part) for part in (prefix, *parts)).encode()).hexdigest()
    return f"{prefix}-{digest[:10]}"


# --- fault injection -------------------------------------------------------------


@dataclass(frozen=True)
class Faults:
    """The fault plan of one execution: fault point -> failures to inject."""

    plan: Mapping[str, int | str] = field(default_factory=dict)

    @classmethod
    def from_input(cls, event: Mapping[str, Any]) -> Faults:
        """Read and validate ``event["faults"]``."""
        raw = event.get("faults") or {}
        if not isinstance(raw, Mapping):
            raise TypeError("faults must be an object of fault point -> count or 'fail'")
        for point, planned in raw.items():
            _validate_fault(point, planned)
        return cls(plan=dict(raw))

    def to_input(self) -> dict[str, int | str]:
        """The plan as JSON, to pass on to chained functions."""
        return dict(self.plan)

    def check(self, point: str, key: str) -> int:
        """Record an attempt at ``point`` for ``key`` and raise its injected fault.

        Returns the attempt number (1-based). The attempt row is written before
        the fault is raised, so a failed attempt still counts.
        """
        attempt = add_attempt(point, key)
        planned = self.plan.get(point, 0)
        if planned == INTERRUPT_FAULT or (planned and point in disabled_fault_points()):
            return attempt  # interrupted after the effect (see interrupt_after), or switched off
        if planned == PERMANENT_FAULT:
            raise PermanentServiceError(f"{point} failed for {key} (injected permanent fault)")
        if isinstance(planned, int) and attempt <= planned:
            raise TransientServiceError(
                f"{point} unavailable for {key} (injected fault, attempt {attempt} of {planned})"
            )
        return attempt

    def interrupt_after(self, point: str, key: str, attempt: int) -> None:
        """End the invocation now if ``point`` is planned to be interrupted on this attempt.

        Called after the call's effect is in the ledger: the effect happened, and
        whoever runs the step next cannot tell from the step's checkpoint.
        """
        if self.plan.get(point) != INTERRUPT_FAULT or attempt != 1:
            return
        if point in disabled_fault_points():
            return
        raise SimulatedWorkerLoss(f"{point} for {key}: worker lost after the call took effect (injected)")


def _validate_fault(point: object, planned: object) -> None:
    if point not in FAULT_POINTS:
        raise ValueError(f"unknown fault point {point!r}; known: {', '.join(FAULT_POINTS)}")
    if planned in (PERMANENT_FAULT, INTERRUPT_FAULT):
        return
    if isinstance(planned, bool) or not isinstance(planned, int) or planned < 0:
        raise ValueError(f"fault {point}: expected a count >= 0, {PERMANENT_FAULT!r} or {INTERRUPT_FAULT!r}")


NO_FAULTS = Faults()


class SimulatedService:
    """Shared plumbing: a ledger name and the fault plan of the execution."""

    name = "service"

    def __init__(self, faults: Faults = NO_FAULTS) -> None:
        self.faults = faults
        self._current: tuple[str, str, int] | None = None  # (point, key, attempt) of the call

    def _call(self, operation: str, key: str) -> int:
        point = f"{self.name}.{operation}"
        attempt = self.faults.check(point, key)
        self._current = (point, key, attempt)
        return attempt

    def _record(self, action: str, key: str, **data: Any) -> None:
        record(self.name, action, key, **data)
        if self._current is not None:
            self.faults.interrupt_after(*self._current)


# --- commerce ------------------------------------------------------------------


def price_items(items: Sequence[Mapping[str, Any]]) -> int:
    """Order total in cents from the catalogue."""
    return sum(CATALOGUE[item["sku"]] * int(item["quantity"]) for item in items)


class Inventory(SimulatedService):
    name = "inventory"

    def reserve(self, order_id: str, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        attempt = self._call("reserve", order_id)
        reservation_id = short_id("res", order_id)
        self._record("reserve", order_id, reservation_id=reservation_id, items=list(items))
        return {"reservation_id": reservation_id, "items": list(items), "attempt": attempt}

    def release(self, order_id: str, reservation_id: str) -> dict[str, Any]:
        self._call("release", order_id)
        self._record("release", order_id, reservation_id=reservation_id)
        return {"reservation_id": reservation_id, "released": True}

    def allocate(self, order_id: str, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        attempt = self._call("allocate", order_id)
        missing = sorted({item["sku"] for item in items} & OUT_OF_STOCK_SKUS)
        if missing:
            raise OutOfStockError(f"out of stock: {', '.join(missing)}")
        allocation_id = short_id("alloc", order_id)
        self._record("allocate", order_id, allocation_id=allocation_id, items=list(items))
        return {"allocation_id": allocation_id, "warehouse": "wh-east-1", "attempt": attempt}


class Payments(SimulatedService):
    """Charges, authorizations, captures and their reversals, keyed by an idempotency key.

    Like a real payment provider, it can say whether a call happened for a key
    (``charge_for``, ``authorization_for``, ``capture_for``), which is what a
    workflow needs after a step was interrupted mid-call: the step's checkpoint
    cannot tell, the provider can. Reversals (``void``, ``refund``) are
    idempotent: repeating one returns the first result and moves no money.
    """

    name = "payment"

    def _refuse_declined(self, card: str) -> None:
        if card == DECLINED_CARD:
            raise PaymentDeclinedError("card declined by issuer (insufficient funds)")

    def charge(self, key: str, amount_cents: int, card: str) -> dict[str, Any]:
        attempt = self._call("charge", key)
        self._refuse_declined(card)
        charge_id = short_id("ch", key)
        self._record("charge", key, charge_id=charge_id, amount_cents=amount_cents)
        return {"charge_id": charge_id, "amount_cents": amount_cents, "attempt": attempt}

    def refund(self, key: str, charge_id: str, amount_cents: int) -> dict[str, Any]:
        self._call("refund", key)
        refund_id = short_id("re", key, charge_id)
        done = {"refund_id": refund_id, "amount_cents": amount_cents}
        if not any(entry["refund_id"] == refund_id for entry in data(self.name, "refund", key)):
            self._record("refund", key, charge_id=charge_id, refund_id=refund_id, amount_cents=amount_cents)
        return done

    def authorize(self, key: str, amount_cents: int, card: str) -> dict[str, Any]:
        attempt = self._call("authorize", key)
        self._refuse_declined(card)
        authorization_id = short_id("auth", key)
        self._record("authorize", key, authorization_id=authorization_id, amount_cents=amount_cents)
        return {
            "authorization_id": authorization_id,
            "amount_cents": amount_cents,
            "attempt": attempt,
        }

    def capture(self, key: str, authorization_id: str, amount_cents: int) -> dict[str, Any]:
        self._call("capture", key)
        capture_id = short_id("cap", key)
        ids = {"capture_id": capture_id, "authorization_id": authorization_id}
        self._record("capture", key, **ids, amount_cents=amount_cents)
        return {"capture_id": capture_id, "amount_cents": amount_cents}

    def void(self, key: str, authorization_id: str) -> dict[str, Any]:
        self._call("void", key)
        if not any(entry["authorization_id"] == authorization_id for entry in data(self.name, "void", key)):
            self._record("void", key, authorization_id=authorization_id)
        return {"authorization_id": authorization_id, "voided": True}

    # --- what happened for a key (no fault point: a read) ---------------------------

    def charge_for(self, key: str) -> dict[str, Any] | None:
        """The charge made for ``key``, if any."""
        return _first(data(self.name, "charge", key))

    def authorization_for(self, key: str) -> dict[str, Any] | None:
        """The authorization made for ``key``, if any."""
        return _first(data(self.name, "authorize", key))

    def capture_for(self, key: str) -> dict[str, Any] | None:
        """The capture made for ``key``, if any."""
        return _first(data(self.name, "capture", key))


def _first(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    return entries[0] if entries else None


class Shipping(SimulatedService):
    name = "shipping"

    def create_shipment(
        self, order_id: str, address: str, items: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        attempt = self._call("create_shipment", order_id)
        shipment_id = short_id("shp", order_id)
        tracking = "1Z" + short_id("t", order_id).split("-")[1].upper()
        self._record("create_shipment", order_id, shipment_id=shipment_id, address=address, items=list(items))
        return {
            "shipment_id": shipment_id,
            "tracking_number": tracking,
            "carrier": "UPS",
            "attempt": attempt,
        }


class Fulfilment(SimulatedService):
    name = "fulfilment"

    def pack(self, order_id: str, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        self._call("pack", order_id)
        parcels = max(1, sum(int(item["quantity"]) for item in items) // 5)
        self._record("pack", order_id, parcels=parcels)
        return {"package_id": short_id("pkg", order_id), "parcels": parcels}


class Email(SimulatedService):
    name = "email"

    def send(self, to: str, template: str, key: str, **context: Any) -> dict[str, Any]:
        self._call("send", f"{template}:{key}")
        message_id = short_id("msg", template, key)
        self._record(template, key, to=to, message_id=message_id, **context)
        return {"message_id": message_id, "to": to, "template": template}


# --- accounts --------------------------------------------------------------------


class Customers(SimulatedService):
    name = "customers"

    def lookup(self, customer_id: str) -> dict[str, Any]:
        self._call("lookup", customer_id)
        tier = ("bronze", "silver", "gold")[int(short_id("t", customer_id)[-2:], 16) % 3]
        self._record("lookup", customer_id, tier=tier)
        return {
            "customer_id": customer_id,
            "name": f"Customer {customer_id[-4:]}",
            "email": f"{customer_id}@example.com",
            "tier": tier,
            "credit_limit_cents": {"bronze": 50_000, "silver": 200_000, "gold": 1_000_000}[tier],
        }

    def create_account(self, email: str, name: str) -> dict[str, Any]:
        self._call("create_account", email)
        user_id = short_id("usr", email)
        self._record("create_account", email, user_id=user_id, name=name)
        return {"user_id": user_id, "email": email, "name": name}

    def update_profile(self, user_id: str, section: str, values: Mapping[str, Any]) -> dict[str, Any]:
        self._call("update_profile", f"{user_id}:{section}")
        self._record("update_profile", user_id, section=section, values=dict(values))
        return {"section": section, **values}

    def set_status(self, user_id: str, status: str) -> dict[str, Any]:
        self._call("set_status", user_id)
        self._record("set_status", user_id, status=status)
        return {"user_id": user_id, "status": status}


# --- documents -------------------------------------------------------------------


class Documents(SimulatedService):
    name = "documents"

    def prepare(self, document_id: str, title: str, author: str) -> dict[str, Any]:
        self._call("prepare", document_id)
        pages = 1 + int(short_id("p", document_id)[-2:], 16) % 20
        checksum = short_id("sha", document_id, title)
        self._record("prepare", document_id, title=title, author=author, pages=pages)
        return {
            "document_id": document_id,
            "title": title,
            "author": author,
            "pages": pages,
            "checksum": checksum,
            "body": document_body(title, author, pages),
        }

    def finalize(self, document_id: str, reviewer: str) -> dict[str, Any]:
        self._call("finalize", document_id)
        self._record("finalize", document_id, reviewer=reviewer)
        return {"published_url": f"https://docs.example.com/{document_id}", "version": 1}

    def archive(self, document_id: str, reason: str) -> dict[str, Any]:
        self._call("archive", document_id)
        self._record("archive", document_id, reason=reason)
        return {"archive_id": short_id("arc", document_id), "reason": reason}


def document_body(title: str, author: str, pages: int) -> str:
    """A readable stand-in for the document's text (what reviewers read in the inbox)."""
    return (
        f"{title}\n\n"
        f"Prepared by {author}; {pages} page{'s' if pages != 1 else ''}.\n\n"
        "1. Scope. The supplier delivers the goods listed in Schedule A on the agreed dates.\n"
        "2. Price. Prices are fixed for twelve months from signature.\n"
        "3. Termination. Either party may terminate with ninety days' written notice."
    )


class Approvals(SimulatedService):
    """The demo's record that a decision was asked for (the fault point "approvals.request").

    The real request goes to the approvals app's inbox; this ledger row only
    lets tests count requests. It keeps the callback id's hash, never the id:
    the id completes the callback, so it is as good as a password.
    """

    name = "approvals"

    def request(self, document_id: str, callback_id_hash: str, reviewers: Sequence[str], title: str) -> None:
        self._call("request", document_id)
        self._record(
            "approval_requested",
            document_id,
            callback_id_hash=callback_id_hash,
            reviewers=list(reviewers),
            title=title,
        )


# --- data ------------------------------------------------------------------------


def source_record(dataset: str, index: int) -> dict[str, Any]:
    """Row ``index`` of a simulated source table; the same every time."""
    return {"id": f"{dataset}-{index:06d}", "amount_cents": 100 + (index * 7919) % 10_000}


class DataSource(SimulatedService):
    name = "source"

    def extract(self, job_id: str, dataset: str, record_count: int) -> dict[str, Any]:
        attempt = self._call("extract", job_id)
        snapshot_id = short_id("snap", job_id, dataset)
        self._record("extract", job_id, dataset=dataset, records=record_count, snapshot_id=snapshot_id)
        return {
            "snapshot_id": snapshot_id,
            "dataset": dataset,
            "records": record_count,
            "attempt": attempt,
        }

    def read(self, dataset: str, start: int, stop: int) -> list[dict[str, Any]]:
        return [source_record(dataset, index) for index in range(start, stop)]


class Warehouse(SimulatedService):
    name = "warehouse"

    def stage(self, job_id: str, batch: int, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        self._call("stage", f"{job_id}:batch-{batch}")
        total = sum(int(row["amount_cents"]) for row in rows)
        self._record("stage", job_id, batch=batch, rows=len(rows), total_cents=total)
        return {"batch": batch, "rows": len(rows), "total_cents": total}

    def load(self, job_id: str, table: str, rows: int, total_cents: int) -> dict[str, Any]:
        self._call("load", job_id)
        self._record("load", job_id, table=table, rows=rows, total_cents=total_cents)
        return {"table": table, "rows": rows, "load_id": short_id("load", job_id)}

    def verify(self, job_id: str, expected_rows: int) -> dict[str, Any]:
        self._call("verify", job_id)
        staged = data(self.name, "stage", job_id)
        # A batch staged twice would double-count: compare distinct batches.
        rows = sum({entry["batch"]: entry["rows"] for entry in staged}.values())
        return {"expected_rows": expected_rows, "staged_rows": rows, "ok": rows == expected_rows}


class RecordStore(SimulatedService):
    name = "records"

    def fetch_ids(self, job_id: str, record_count: int) -> list[str]:
        self._call("fetch", job_id)
        self._record("fetch", job_id, records=record_count)
        return [f"rec-{index:05d}" for index in range(1, record_count + 1)]

    def process(self, job_id: str, batch: int, record_ids: Sequence[str], poisoned: bool) -> dict[str, Any]:
        attempt = self._call("process", f"{job_id}:batch-{batch}")
        if poisoned:
            raise PermanentServiceError(f"batch {batch} contains a malformed record")
        value = sum(int(record_id.split("-")[1]) % 97 for record_id in record_ids)
        self._record("process", job_id, batch=batch, records=len(record_ids), value=value)
        return {"batch": batch, "processed": len(record_ids), "value": value, "attempt": attempt}

    def aggregate(self, job_id: str, processed: int, value: int) -> dict[str, Any]:
        self._call("aggregate", job_id)
        self._record("aggregate", job_id, processed=processed, value=value)
        return {"report_id": short_id("rpt", job_id)}


# --- travel ----------------------------------------------------------------------


class Bookings(SimulatedService):
    name = "booking"

    def availability(self, booking_id: str, hotel: str, room_type: str, nights: int) -> dict[str, Any]:
        attempt = self._call("availability", booking_id)
        rate = ROOM_RATES[room_type]
        return {
            "hotel": hotel,
            "room_type": room_type,
            "nightly_rate_cents": rate,
            "total_cents": rate * nights,
            "attempt": attempt,
        }

    def reserve_room(self, booking_id: str, hotel: str, room_type: str, nights: int) -> dict[str, Any]:
        attempt = self._call("reserve_room", booking_id)
        room = 100 + int(short_id("r", booking_id)[-2:], 16) % 400
        self._record("reserve_room", booking_id, hotel=hotel, room_type=room_type, nights=nights, room=room)
        return {"confirmation": short_id("cnf", booking_id), "room": room, "attempt": attempt}

    def upgrade(self, booking_id: str, room_type: str) -> dict[str, Any]:
        attempt = self._call("upgrade", booking_id)
        self._record("upgrade", booking_id, room_type=room_type)
        return {"room_type": room_type, "attempt": attempt}
