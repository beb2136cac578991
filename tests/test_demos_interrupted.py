"""Payment steps interrupted mid-call: the demos undo exactly what the payment service did.

An interruption is injected with the fault ``"interrupt"``: the first call takes
effect, then the invocation ends before the step's checkpoint (as a killed
worker), so the AT_MOST_ONCE step replays as interrupted (StepInterruptedError).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from durable_console.bootstrap import register_demo_functions
from examples import ledger
from examples.ledger import count
from examples.services import Payments
from executions.models import Execution, Invocation, Operation
from tests.engine_driver import EngineDriver, engine_driver, refreshed, start

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def driver() -> Iterator[EngineDriver]:
    register_demo_functions()
    with engine_driver() as running:
        yield running
    ledger.close()


def run(driver: EngineDriver, name: str, payload: dict[str, Any]) -> Execution:
    execution = start(name, payload)
    driver.run_until(lambda: refreshed(execution).is_terminal)
    return refreshed(execution)


def result_of(execution: Execution) -> dict[str, Any]:
    assert execution.status == "SUCCEEDED", execution.error
    return json.loads(execution.result)


def interrupted_step(execution: Execution, name: str) -> Operation:
    op = Operation.objects.get(execution=execution, name=name)
    assert op.status == "FAILED" and op.error["ErrorType"].endswith(".StepInterruptedError")
    return op


def test_an_interrupted_authorization_is_voided_once(driver: EngineDriver) -> None:
    execution = run(
        driver, "order-processing", {"order_id": "ia-1", "faults": {"payment.authorize": "interrupt"}}
    )
    result = result_of(execution)
    assert result["status"] == "payment_interrupted" and result["failed_step"] == "authorize-payment"
    interrupted_step(execution, "authorize-payment")
    assert count("payment", "authorize", "ia-1") == 1  # not run again by the replay
    assert count("payment", "void", "ia-1") == 1
    assert result["voided"] == ledger.data("payment", "void", "ia-1")[0]["authorization_id"]
    assert count("payment", "capture", "ia-1") == 0 and count("inventory", "allocate", "ia-1") == 0
    first = Invocation.objects.filter(execution=execution).order_by("number").first()
    assert first is not None and first.error["ErrorType"] == "examples.services.SimulatedWorkerLoss"


def test_an_interrupted_capture_is_refunded_once(driver: EngineDriver) -> None:
    execution = run(
        driver, "order-processing", {"order_id": "ic-1", "faults": {"payment.capture": "interrupt"}}
    )
    result = result_of(execution)
    assert (result["status"], result["failed_step"]) == ("payment_interrupted", "capture-payment")
    interrupted_step(execution, "capture-payment")
    assert count("payment", "capture", "ic-1") == 1
    assert count("payment", "refund", "ic-1") == 1 and count("payment", "void", "ic-1") == 0
    assert ledger.data("payment", "refund", "ic-1")[0]["charge_id"] == result["refunded"]
    assert count("shipping", "create_shipment", "ic-1") == 0


def test_an_interrupted_charge_is_refunded_before_the_reservation_is_released(driver: EngineDriver) -> None:
    execution = run(
        driver, "distributed-transaction", {"order_id": "it-1", "faults": {"payment.charge": "interrupt"}}
    )
    result = result_of(execution)
    assert result["status"] == "compensated"
    assert result["compensations"] == ["refund-interrupted-charge", "release-inventory"]
    assert count("payment", "charge", "it-1") == 1 and count("payment", "refund", "it-1") == 1
    assert count("inventory", "release", "it-1") == 1


def test_the_payment_service_undoes_only_what_happened(driver: EngineDriver) -> None:
    payments = Payments()
    assert payments.authorization_for("nothing") is None and payments.capture_for("nothing") is None
    authorization = payments.authorize("pk-1", 500, "tok_visa")
    assert payments.authorization_for("pk-1") == {
        "authorization_id": authorization["authorization_id"],
        "amount_cents": 500,
    }
    payments.void("pk-1", authorization["authorization_id"])
    payments.void("pk-1", authorization["authorization_id"])  # a repeated void moves nothing
    assert count("payment", "void", "pk-1") == 1
