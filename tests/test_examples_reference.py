"""The demo functions on the SDK's reference in-memory service.

Each scenario runs on ``DurableFunctionTestRunner`` (the testing library's
in-process backend, with a skipping clock so waits and retry backoffs take no
real time). These tests pin down what the demo functions do, independent of
Durable Console's own engine: the same handlers must give the same results
and the same ledger counts there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aws_durable_execution_sdk_python.execution import InvocationStatus
from aws_durable_execution_sdk_python.lambda_service import OperationType
from aws_durable_execution_sdk_python_testing.runner import (
    DurableFunctionTestResult,
    DurableFunctionTestRunner,
)

from approvals.models import ApprovalRequest, EmailVerification
from examples import (
    batch_processing,
    booking,
    data_pipeline,
    distributed_transaction,
    document_approval,
    function_chaining,
    ledger,
    order_processing,
    user_onboarding,
)
from examples.ledger import attempts, count
from examples.models import LedgerEntry
from examples.registry import DEMO_FUNCTIONS, get
from executions.engine.callback_ids import hash_callback_id
from tests.polling import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def close_ledger_connection() -> Iterator[None]:
    """The services write on their own thread; let go of its connection after each test."""
    yield
    ledger.close()


Handler = Callable[..., Any]


def runner_for(handler: Handler) -> DurableFunctionTestRunner:
    """A reference runner with every chained target of the registry registered."""
    runner = DurableFunctionTestRunner(handler=handler, poll_interval=0.05)
    for function in DEMO_FUNCTIONS:
        if function.name.startswith("chain-"):
            if function.durable:
                runner.register_durable_function(function.name, function.load())
            else:
                runner.register_function(function.name, function.load())
    return runner


def run(handler: Handler, payload: dict[str, Any]) -> DurableFunctionTestResult:
    with runner_for(handler) as runner:
        return runner.run(input=json.dumps(payload), execution_timeout=30)


def succeeded(result: DurableFunctionTestResult) -> dict[str, Any]:
    assert result.status is InvocationStatus.SUCCEEDED, result.error
    return json.loads(result.result)


@pytest.fixture
def callback_run() -> Iterator[Callable[..., tuple[DurableFunctionTestRunner, str, str]]]:
    """Start a handler, wait until its callback exists; yields (runner, arn, callback id)."""
    runners: list[DurableFunctionTestRunner] = []

    def start(handler: Handler, payload: dict[str, Any]) -> tuple[DurableFunctionTestRunner, str, str]:
        runner = runner_for(handler)
        runners.append(runner)
        arn = runner.run_async(input=json.dumps(payload), execution_timeout=30)
        return runner, arn, runner.wait_for_callback(arn, timeout=10)

    yield start
    for runner in runners:
        runner.close()


# --- registry ----------------------------------------------------------------------


def test_registry_names_are_unique_and_handlers_load() -> None:
    names = [function.name for function in DEMO_FUNCTIONS]
    assert len(names) == len(set(names))
    assert {
        "distributed-transaction",
        "order-processing",
        "document-approval",
        "data-pipeline",
        "function-chaining",
        "user-onboarding",
        "batch-processing",
        "booking",
    } <= set(names)
    for function in DEMO_FUNCTIONS:
        assert callable(function.load()), function.name
        assert function.execution_timeout > 0


def test_chained_target_names_match_the_registry() -> None:
    for name in (function_chaining.CUSTOMER_FUNCTION, function_chaining.PAYMENT_FUNCTION):
        assert get(name).durable
    for name in (function_chaining.INVENTORY_FUNCTION, function_chaining.FULFILMENT_FUNCTION):
        assert not get(name).durable
    assert get(function_chaining.ORCHESTRATOR).handler == "examples.function_chaining:handler"


@pytest.mark.parametrize(
    "name",
    [
        "distributed-transaction",
        "order-processing",
        "data-pipeline",
        "function-chaining",
        "chain-customer",
        "chain-payment",
        "batch-processing",
        "booking",
    ],
)
def test_durable_demo_runs_with_empty_input(name: str) -> None:
    """`start NAME` with {} works: every field has a default (waits are skipped here)."""
    result = succeeded(run(get(name).load(), {}))
    assert result


def test_plain_targets_run_with_empty_input() -> None:
    reservation = get("chain-inventory").load()({}, None)
    shipment = get("chain-fulfilment").load()({}, None)
    assert reservation["reservation_id"].startswith("res-")
    assert shipment["tracking_number"].startswith("1Z")


# --- distributed transaction ----------------------------------------------------------


def test_transaction_retries_payment_without_reserving_twice() -> None:
    result = succeeded(
        run(distributed_transaction.handler, {"order_id": "dt-1", "faults": {"payment.charge": 1}})
    )
    assert result["status"] == "completed"
    assert result["payment_attempts"] == 2
    assert attempts("payment.charge", "dt-1") == 2
    assert count("payment", "charge", "dt-1") == 1
    assert count("inventory", "reserve", "dt-1") == 1
    assert count("shipping", "create_shipment", "dt-1") == 1


def test_transaction_declined_card_releases_the_reservation() -> None:
    result = succeeded(run(distributed_transaction.handler, {"order_id": "dt-2", "card_declined": True}))
    assert result["status"] == "compensated"
    assert result["failed_step"] == "charge-payment"
    assert result["compensations"] == ["release-inventory"]
    assert result["error_type"].endswith("PaymentDeclinedError")
    assert attempts("payment.charge", "dt-2") == 1  # a decline is not retried
    assert count("payment", "charge", "dt-2") == 0
    assert count("inventory", "release", "dt-2") == 1


def test_transaction_failed_shipment_refunds_then_releases() -> None:
    result = succeeded(
        run(
            distributed_transaction.handler,
            {"order_id": "dt-3", "faults": {"shipping.create_shipment": "fail"}},
        )
    )
    assert result["compensations"] == ["refund-payment", "release-inventory"]
    assert count("payment", "refund", "dt-3") == 1
    assert count("inventory", "release", "dt-3") == 1


# --- order processing --------------------------------------------------------------------


def test_order_is_fulfilled() -> None:
    result = succeeded(run(order_processing.handler, {"order_id": "op-1", "faults": {"fulfilment.pack": 1}}))
    assert result["status"] == "fulfilled"
    assert result["amount_cents"] == 2 * 1250 + 4999
    assert count("payment", "capture", "op-1") == 1
    assert count("email", "order-confirmation", "op-1") == 1


def test_invalid_order_is_rejected_before_any_step() -> None:
    outcome = run(
        order_processing.handler,
        {
            "order_id": "op-2",
            "items": [{"sku": "sku-nope", "quantity": 1}, {"sku": "sku-gizmo", "quantity": 0}],
        },
    )
    result = succeeded(outcome)
    assert result["status"] == "rejected"
    assert len(result["reasons"]) == 2
    assert outcome.operations == []
    assert LedgerEntry.objects.count() == 0


def test_order_with_declined_card_touches_no_inventory() -> None:
    result = succeeded(run(order_processing.handler, {"order_id": "op-3", "card_declined": True}))
    assert result["status"] == "payment_declined"
    assert count("inventory", "allocate", "op-3") == 0


def test_out_of_stock_order_voids_the_authorization() -> None:
    result = succeeded(
        run(
            order_processing.handler,
            {"order_id": "op-4", "items": [{"sku": "sku-discontinued", "quantity": 1}]},
        )
    )
    assert result["status"] == "out_of_stock"
    assert count("payment", "void", "op-4") == 1
    assert count("payment", "capture", "op-4") == 0


# --- document approval -----------------------------------------------------------------


def approval_payload(document_id: str, **extra: Any) -> dict[str, Any]:
    return {"document_id": document_id, "approval_timeout_seconds": 20, **extra}


def test_approved_document_is_finalized(callback_run: Callable[..., Any]) -> None:
    payload = approval_payload("doc-1", faults={"approvals.request": 1})
    runner, arn, callback_id = callback_run(document_approval.handler, payload)
    # The submitter failed once and was retried: still one request, for the same callback
    # (the ledger keeps only the id's hash). The callback is the reference backend's, not
    # this service's, so nothing went to the approvals inbox.
    # The callback exists before its submitter step runs; the retried submitter comes later.
    request = wait_until(
        lambda: LedgerEntry.objects.filter(
            service="approvals", action="approval_requested", key="doc-1"
        ).first(),
        timeout=20,
        message="the retried submitter's approval request",
    )
    assert request.data["callback_id_hash"] == hash_callback_id(callback_id)
    assert request.data["reviewers"] == ["approvers"]
    assert attempts("approvals.request", "doc-1") == 2
    assert not ApprovalRequest.objects.exists()
    decision = {"approved": True, "comments": "Ship it", "reviewer": "rev@example.com"}
    runner.send_callback_success(callback_id, json.dumps(decision).encode())
    result = succeeded(runner.wait_for_result(arn, timeout=30))
    assert result["status"] == "approved"
    assert (result["approved"], result["comments"], result["reviewer"]) == (
        True,
        "Ship it",
        "rev@example.com",
    )
    assert count("documents", "finalize", "doc-1") == 1


def test_rejected_document_is_archived(callback_run: Callable[..., Any]) -> None:
    runner, arn, callback_id = callback_run(document_approval.handler, approval_payload("doc-2"))
    decision = {"approved": False, "reason": "Missing figures", "reviewer": "rev@example.com"}
    runner.send_callback_success(callback_id, json.dumps(decision).encode())
    result = succeeded(runner.wait_for_result(arn, timeout=30))
    assert (result["status"], result["reason"]) == ("rejected", "Missing figures")
    assert count("documents", "archive", "doc-2") == 1
    assert count("documents", "finalize", "doc-2") == 0


def test_undecided_document_expires_and_is_archived() -> None:
    result = succeeded(run(document_approval.handler, approval_payload("doc-3", approval_timeout_seconds=1)))
    assert result["status"] == "expired"
    assert count("documents", "archive", "doc-3") == 1


# --- data pipeline -------------------------------------------------------------------------


def pipeline_payload(job_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "record_count": 25,
        "batch_size": 10,
        "rate_limit_wait_seconds": 60,
        "reference_time": "2026-03-01T22:30:00Z",
        "off_peak_hour": 2,
        **extra,
    }


def test_pipeline_waits_for_off_peak_from_the_reference_time() -> None:
    outcome = run(data_pipeline.handler, pipeline_payload("etl-1", faults={"warehouse.stage": 1}))
    result = succeeded(outcome)
    assert result["status"] == "loaded" and result["verified"]
    assert (result["batches"], result["rows_loaded"]) == (3, 25)
    # 22:30 + 60 s cool-down -> 02:00 next day.
    assert result["load_window"]["wait_seconds"] == 3 * 3600 + 29 * 60
    assert result["load_window"]["load_at"].startswith("2026-03-02T02:00:00")
    waits = [op.name for op in outcome.operations if op.operation_type is OperationType.WAIT]
    assert waits == ["rate-limit-cooldown", "wait-for-off-peak"]
    assert count("warehouse", "stage", "etl-1") == 3  # the retried batch was staged once


def test_pipeline_inside_off_peak_hour_does_not_wait_again() -> None:
    outcome = run(
        data_pipeline.handler, pipeline_payload("etl-2", reference_time="2026-03-01T02:10:00+00:00")
    )
    result = succeeded(outcome)
    assert result["load_window"]["wait_seconds"] == 0
    waits = [op.name for op in outcome.operations if op.operation_type is OperationType.WAIT]
    assert waits == ["rate-limit-cooldown"]


def test_off_peak_hour_arithmetic() -> None:
    moment = data_pipeline.parse_time("2026-03-01T01:59:30Z")
    assert data_pipeline.seconds_until_off_peak(moment, 2) == 30
    assert data_pipeline.seconds_until_off_peak(moment, 1) == 0
    assert data_pipeline.seconds_until_off_peak(moment, 0) == 22 * 3600 + 30


def test_pipeline_wait_can_be_overridden() -> None:
    outcome = run(data_pipeline.handler, pipeline_payload("etl-3", off_peak_wait_seconds=5))
    window = succeeded(outcome)["load_window"]
    assert (window["reference"], window["wait_seconds"]) == ("override", 5)


# --- function chaining ---------------------------------------------------------------------


def test_chain_invokes_every_function_and_checkpoints_results() -> None:
    outcome = run(function_chaining.handler, {"order_id": "fc-1", "faults": {"payment.charge": 1}})
    result = succeeded(outcome)
    assert result["status"] == "completed"
    invokes = [op.name for op in outcome.operations if op.operation_type is OperationType.CHAINED_INVOKE]
    assert invokes == ["get-customer", "reserve-inventory", "charge-payment", "fulfil-order"]
    assert attempts("payment.charge", "fc-1") == 2
    assert count("payment", "charge", "fc-1") == 1
    assert count("inventory", "reserve", "fc-1") == 1
    assert count("shipping", "create_shipment", "fc-1") == 1


def test_chain_releases_stock_when_payment_fails() -> None:
    result = succeeded(run(function_chaining.handler, {"order_id": "fc-2", "card_declined": True}))
    assert result["status"] == "payment_failed"
    assert count("inventory", "release", "fc-2") == 1
    assert count("shipping", "create_shipment", "fc-2") == 0


# --- user onboarding ------------------------------------------------------------------------


def test_verified_user_is_onboarded(callback_run: Callable[..., Any]) -> None:
    payload = {"email": "grace@example.com", "verification_timeout_seconds": 20}
    runner, arn, callback_id = callback_run(user_onboarding.handler, payload)
    sent = wait_until(  # the submitter step runs after the callback exists
        lambda: LedgerEntry.objects.filter(service="email", action="verify-email").first(),
        timeout=20,
        message="the verification e-mail",
    )
    assert sent.data["callback_id_hash"] == hash_callback_id(callback_id)
    assert not EmailVerification.objects.exists()  # not this service's callback: no link was sent
    runner.send_callback_success(callback_id, json.dumps({"verified_at": "2026-03-01T10:00:00Z"}).encode())
    result = succeeded(runner.wait_for_result(arn, timeout=30))
    assert result["status"] == "active" and result["verified"]
    assert set(result["profile"]) == {"profile", "preferences", "workspace"}
    assert result["verification"] == {"verified_at": "2026-03-01T10:00:00Z"}
    assert count("email", "welcome", result["user_id"]) == 1
    assert count("customers", "update_profile", result["user_id"]) == 3


def test_unverified_user_gets_a_reminder() -> None:
    payload = {"email": "late@example.com", "verification_timeout_seconds": 1}
    result = succeeded(run(user_onboarding.handler, payload))
    assert result["status"] == "unverified" and not result["verified"]
    assert count("email", "verify-email-reminder", result["user_id"]) == 1
    assert count("email", "welcome", result["user_id"]) == 0
    status = LedgerEntry.objects.get(service="customers", action="set_status", key=result["user_id"])
    assert status.data["status"] == "unverified"


# --- batch processing --------------------------------------------------------------------------


def test_batches_are_mapped_and_aggregated() -> None:
    payload = {
        "job_id": "bp-1",
        "record_count": 42,
        "batch_size": 5,
        "faults": {"records.process": 1},
    }
    result = succeeded(run(batch_processing.handler, payload))
    assert result["status"] == "completed"
    assert (result["batches"], result["processed"], result["max_concurrency"]) == (9, 42, 5)
    assert result["retried_batches"] == list(range(9))
    assert count("records", "process", "bp-1") == 9  # each batch processed exactly once
    assert count("records", "aggregate", "bp-1") == 1


def test_poisoned_batch_is_reported_and_others_finish() -> None:
    payload = {"job_id": "bp-2", "record_count": 20, "batch_size": 5, "poison_batches": [2]}
    result = succeeded(run(batch_processing.handler, payload))
    assert result["status"] == "completed_with_failures"
    assert result["failed_batches"] == [2]
    assert result["processed"] == 15


# --- booking --------------------------------------------------------------------------------


def test_booking_survives_transient_failures() -> None:
    faults = {"booking.reserve_room": 2, "booking.upgrade": 1, "payment.charge": 1, "email.send": 1}
    result = succeeded(run(booking.handler, {"booking_id": "bk-1", "faults": faults}))
    assert result["status"] == "confirmed" and result["upgraded"]
    assert result["attempts"] == {
        "check-availability": 1,
        "reserve-room": 3,
        "take-deposit": 2,
        "apply-upgrade": 2,
    }
    assert count("booking", "reserve_room", "bk-1") == 1
    assert count("payment", "charge", "bk-1") == 1
    assert count("booking", "upgrade", "bk-1") == 1


def test_booking_fails_when_retries_run_out() -> None:
    payload = {"booking_id": "bk-2", "max_attempts": 3, "faults": {"booking.reserve_room": 5}}
    outcome = run(booking.handler, payload)
    assert outcome.status is InvocationStatus.FAILED
    assert attempts("booking.reserve_room", "bk-2") == 3
    assert count("booking", "reserve_room", "bk-2") == 0
    assert count("payment", "charge", "bk-2") == 0
