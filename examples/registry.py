"""The demo functions Durable Console registers, by stable name.

The names are what ``start NAME`` and ``context.invoke`` use, so they never
change; ``handler`` is an import path ("module:attribute"). Plain functions
(``durable=False``) run once per invoke and have no checkpoints.

This module imports nothing from the handlers (or models), so it is safe to
read before Django's app registry is ready; ``DemoFunction.load`` imports the
handler when it is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any

HOUR = 3600


@dataclass(frozen=True)
class DemoFunction:
    name: str
    handler: str  # "module:attr"
    durable: bool
    description: str
    execution_timeout: int  # seconds
    # The input field whose value labels each execution in the console ("" for none: then
    # an approval's title labels it, as for document-approval).
    label_field: str = ""

    def load(self) -> Any:
        """Import and return the handler callable."""
        module_name, attribute = self.handler.split(":")
        return getattr(import_module(module_name), attribute)


DEMO_FUNCTIONS: tuple[DemoFunction, ...] = (
    DemoFunction(
        name="distributed-transaction",
        handler="examples.distributed_transaction:handler",
        durable=True,
        description=(
            "Reserve inventory, charge payment, create shipment; transient payment failures "
            "retry from the last checkpoint, a declined card releases the reservation."
        ),
        execution_timeout=15 * 60,
        label_field="order_id",
    ),
    DemoFunction(
        name="order-processing",
        handler="examples.order_processing:handler",
        durable=True,
        description=(
            "Validate outside any step (deterministic reject path), authorize payment, "
            "allocate inventory, fulfil in a child context; an interrupted authorization is "
            "voided, an interrupted capture refunded."
        ),
        execution_timeout=15 * 60,
        label_field="order_id",
    ),
    DemoFunction(
        name="document-approval",
        handler="examples.document_approval:handler",
        durable=True,
        description=(
            "Prepare a document, wait up to 24 h for a reviewer's decision "
            "(wait_for_callback), then finalize or archive."
        ),
        execution_timeout=25 * HOUR,
    ),
    DemoFunction(
        name="data-pipeline",
        handler="examples.data_pipeline:handler",
        durable=True,
        description=(
            "Extract, wait 5 minutes (rate limit), transform in batches, wait for the off-peak "
            "hour, load, verify."
        ),
        execution_timeout=48 * HOUR,
        label_field="job_id",
    ),
    DemoFunction(
        name="function-chaining",
        handler="examples.function_chaining:handler",
        durable=True,
        description=(
            "Orchestrator that invokes the customer, inventory, payment and fulfilment "
            "functions; each result is checkpointed."
        ),
        execution_timeout=15 * 60,
        label_field="order_id",
    ),
    DemoFunction(
        name="chain-customer",
        handler="examples.function_chaining:customer_handler",
        durable=True,
        description="Chained target (durable): look up the customer and assess risk.",
        execution_timeout=5 * 60,
        label_field="order_id",
    ),
    DemoFunction(
        name="chain-inventory",
        handler="examples.function_chaining:inventory_handler",
        durable=False,
        description="Chained target (plain): reserve or release stock.",
        execution_timeout=60,
    ),
    DemoFunction(
        name="chain-payment",
        handler="examples.function_chaining:payment_handler",
        durable=True,
        description="Chained target (durable): charge the card with backoff retries.",
        execution_timeout=10 * 60,
        label_field="order_id",
    ),
    DemoFunction(
        name="chain-fulfilment",
        handler="examples.function_chaining:fulfilment_handler",
        durable=False,
        description="Chained target (plain): pack, ship and send the shipping e-mail.",
        execution_timeout=60,
    ),
    DemoFunction(
        name="user-onboarding",
        handler="examples.user_onboarding:handler",
        durable=True,
        description=(
            "Create the account, wait up to 48 h for e-mail verification (reminder on "
            "timeout), set up the profile in parallel, send a welcome e-mail."
        ),
        execution_timeout=49 * HOUR,
        label_field="email",
    ),
    DemoFunction(
        name="batch-processing",
        handler="examples.batch_processing:handler",
        durable=True,
        description="Fetch record ids, split into batches, map with max_concurrency=5, aggregate.",
        execution_timeout=HOUR,
        label_field="job_id",
    ),
    DemoFunction(
        name="booking",
        handler="examples.booking:handler",
        durable=True,
        description=(
            "Hotel booking and upgrade that finishes despite transient service failures "
            "(step retries with exponential backoff)."
        ),
        execution_timeout=15 * 60,
        label_field="booking_id",
    ),
)


def get(name: str) -> DemoFunction:
    """The demo function called ``name``; KeyError if there is none."""
    for function in DEMO_FUNCTIONS:
        if function.name == name:
            return function
    raise KeyError(name)
