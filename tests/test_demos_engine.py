"""Every demo function runs to completion on this engine, injected failures included.

The engine is the production one (services, checkpoints, timers, invoker);
the driver runs workers on the test thread and moves a test clock over waits.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from durable_console.bootstrap import register_demo_functions
from examples import ledger
from examples.ledger import attempts, count
from examples.models import LedgerEntry
from examples.registry import DEMO_FUNCTIONS
from executions import services
from executions.models import Execution, Operation
from tests.engine_driver import EngineDriver, callback_id, engine_driver, refreshed, start, started_callback

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def driver() -> Iterator[EngineDriver]:
    register_demo_functions()
    with engine_driver() as running:
        yield running
    ledger.close()  # the simulated services keep a connection on their own thread


def run(driver: EngineDriver, name: str, payload: dict[str, Any]) -> Execution:
    execution = start(name, payload)
    driver.run_until(lambda: refreshed(execution).is_terminal)
    return refreshed(execution)


def succeeded(execution: Execution) -> dict[str, Any]:
    assert execution.status == "SUCCEEDED", execution.error
    return json.loads(execution.result)


def decide(driver: EngineDriver, name: str, payload: dict[str, Any], callback: str, result: Any) -> Execution:
    execution = start(name, payload)
    driver.run_until(lambda: started_callback(execution, callback) is not None)
    op = started_callback(execution, callback)
    assert op is not None
    services.callback_succeed(callback_id(op), json.dumps(result))
    driver.run_until(lambda: refreshed(execution).is_terminal)
    return refreshed(execution)


def test_every_durable_demo_completes_with_empty_input(driver: EngineDriver) -> None:
    waiting_on_people = {"document-approval", "user-onboarding"}
    for demo in DEMO_FUNCTIONS:
        if demo.durable and demo.name not in waiting_on_people:
            assert succeeded(run(driver, demo.name, {})), demo.name


def test_transient_payment_failure_is_charged_exactly_once(driver: EngineDriver) -> None:
    result = succeeded(
        run(driver, "distributed-transaction", {"order_id": "dt-1", "faults": {"payment.charge": 1}})
    )
    assert result["status"] == "completed"
    assert attempts("payment.charge", "dt-1") == 2
    assert count("payment", "charge", "dt-1") == 1
    assert count("inventory", "reserve", "dt-1") == 1  # not reserved again by the retry
    assert count("shipping", "create_shipment", "dt-1") == 1


def test_declined_card_compensates(driver: EngineDriver) -> None:
    result = succeeded(run(driver, "distributed-transaction", {"order_id": "dt-2", "card_declined": True}))
    assert result["status"] == "compensated"
    assert count("inventory", "release", "dt-2") == 1
    assert count("payment", "charge", "dt-2") == 0


def test_invalid_order_is_rejected_without_operations(driver: EngineDriver) -> None:
    execution = run(
        driver, "order-processing", {"order_id": "op-2", "items": [{"sku": "sku-nope", "quantity": 1}]}
    )
    assert succeeded(execution)["status"] == "rejected"
    assert list(Operation.objects.filter(execution=execution).values_list("type", flat=True)) == ["EXECUTION"]
    assert LedgerEntry.objects.count() == 0


def test_order_is_fulfilled_after_a_packing_retry(driver: EngineDriver) -> None:
    result = succeeded(
        run(driver, "order-processing", {"order_id": "op-1", "faults": {"fulfilment.pack": 1}})
    )
    assert result["status"] == "fulfilled"
    assert count("payment", "capture", "op-1") == 1


def test_document_approval_waits_for_the_reviewer(driver: EngineDriver) -> None:
    decision = {"approved": True, "comments": "Ship it", "reviewer": "rev@example.com"}
    execution = decide(
        driver, "document-approval", {"document_id": "doc-1"}, "await-approval create callback id", decision
    )
    result = succeeded(execution)
    assert (result["status"], result["reviewer"]) == ("approved", "rev@example.com")
    assert count("documents", "finalize", "doc-1") == 1


def test_rejected_document_is_archived(driver: EngineDriver) -> None:
    decision = {"approved": False, "reason": "Missing figures", "reviewer": "rev@example.com"}
    execution = decide(
        driver, "document-approval", {"document_id": "doc-2"}, "await-approval create callback id", decision
    )
    assert succeeded(execution)["status"] == "rejected"
    assert count("documents", "archive", "doc-2") == 1


def test_undecided_document_expires_after_24_hours(driver: EngineDriver) -> None:
    result = succeeded(run(driver, "document-approval", {"document_id": "doc-3"}))
    assert result["status"] == "expired"
    assert count("documents", "archive", "doc-3") == 1


def test_onboarding_completes_when_the_email_is_verified(driver: EngineDriver) -> None:
    execution = decide(
        driver,
        "user-onboarding",
        {"email": "grace@example.com"},
        "verify-email create callback id",
        {"verified_at": "2026-03-01T10:00:00Z"},
    )
    result = succeeded(execution)
    assert result["status"] == "active"
    assert count("customers", "update_profile", result["user_id"]) == 3  # the parallel branches
    assert count("email", "welcome", result["user_id"]) == 1


def test_onboarding_sends_a_reminder_when_nobody_verifies(driver: EngineDriver) -> None:
    result = succeeded(run(driver, "user-onboarding", {"email": "late@example.com"}))
    assert result["status"] == "unverified"
    assert count("email", "verify-email-reminder", result["user_id"]) == 1


def test_pipeline_waits_for_the_off_peak_hour(driver: EngineDriver) -> None:
    payload = {
        "job_id": "etl-1",
        "record_count": 25,
        "batch_size": 10,
        "rate_limit_wait_seconds": 60,
        "reference_time": "2026-03-01T22:30:00Z",
        "off_peak_hour": 2,
        "faults": {"warehouse.stage": 1},
    }
    execution = run(driver, "data-pipeline", payload)
    result = succeeded(execution)
    assert (result["batches"], result["rows_loaded"]) == (3, 25)
    assert result["load_window"]["wait_seconds"] == 3 * 3600 + 29 * 60
    assert count("warehouse", "stage", "etl-1") == 3
    waits = Operation.objects.filter(execution=execution, type="WAIT").order_by("position")
    assert [op.name for op in waits] == ["rate-limit-cooldown", "wait-for-off-peak"]


def test_chaining_invokes_durable_and_plain_targets(driver: EngineDriver) -> None:
    execution = run(driver, "function-chaining", {"order_id": "fc-1", "faults": {"payment.charge": 1}})
    assert succeeded(execution)["status"] == "completed"
    invokes = Operation.objects.filter(execution=execution, type="CHAINED_INVOKE").order_by("position")
    assert [(op.name, op.status) for op in invokes] == [
        ("get-customer", "SUCCEEDED"),
        ("reserve-inventory", "SUCCEEDED"),
        ("charge-payment", "SUCCEEDED"),
        ("fulfil-order", "SUCCEEDED"),
    ]
    children = Execution.objects.filter(parent=execution)
    assert sorted(child.function.name for child in children) == ["chain-customer", "chain-payment"]
    assert count("payment", "charge", "fc-1") == 1


def test_batch_processing_maps_with_bounded_concurrency(driver: EngineDriver) -> None:
    payload = {"job_id": "bp-1", "record_count": 42, "batch_size": 5, "faults": {"records.process": 1}}
    result = succeeded(run(driver, "batch-processing", payload))
    assert (result["batches"], result["processed"], result["max_concurrency"]) == (9, 42, 5)
    assert count("records", "process", "bp-1") == 9


def test_booking_survives_transient_failures(driver: EngineDriver) -> None:
    faults = {"booking.reserve_room": 2, "payment.charge": 1}
    result = succeeded(run(driver, "booking", {"booking_id": "bk-1", "faults": faults}))
    assert result["status"] == "confirmed"
    assert result["attempts"]["reserve-room"] == 3
    assert count("payment", "charge", "bk-1") == 1


def test_booking_fails_when_retries_run_out(driver: EngineDriver) -> None:
    execution = run(
        driver, "booking", {"booking_id": "bk-2", "max_attempts": 2, "faults": {"booking.reserve_room": 5}}
    )
    assert execution.status == "FAILED"
    assert count("payment", "charge", "bk-2") == 0
