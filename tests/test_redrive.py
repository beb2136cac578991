"""Redrive and re-run: a failed execution continues from its last good checkpoint.

Interrupted at-most-once operations (a step cut off mid-body, a plain call whose
worker died) may have taken effect: a redrive keeps them failed unless the
operator accepts running them again. The interruption is injected with the demo
fault ``"interrupt"`` (the call takes effect, then the invocation ends before the
step's checkpoint, as a killed worker), so the SDK's replay of the STARTED
AT_MOST_ONCE step fails it with StepInterruptedError, as after a real kill.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from aws_durable_execution_sdk_python import DurableContext, StepError, durable_execution
from django.core.management import call_command

from durable_console.bootstrap import register_demo_functions
from examples import ledger
from examples.ledger import attempts, count
from examples.policies import money_step, retrying_step
from examples.services import Faults, Payments
from examples.switches import fault_switch_set
from executions import operator, services
from executions.audit import Actor
from executions.engine.errors import ResourceConflict
from executions.models import AuditEntry, Execution, FunctionVersion, Operation
from tests.engine_driver import EngineDriver, engine_driver, refreshed, register, start

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def driver() -> Iterator[EngineDriver]:
    register_demo_functions()
    with engine_driver() as running:
        yield running
    ledger.close()


def finished(driver: EngineDriver, execution: Execution) -> Execution:
    driver.run_until(lambda: refreshed(execution).is_terminal)
    return refreshed(execution)


def test_redrive_after_the_outage_succeeds_without_redoing_completed_steps(driver: EngineDriver) -> None:
    payload = {"booking_id": "rd-1", "max_attempts": 2, "faults": {"booking.reserve_room": 50}}
    failed = finished(driver, start("booking", payload))
    assert failed.status == "FAILED"
    assert attempts("booking.availability", "rd-1") == 1

    preview = services.redrive_preview(failed)
    assert [op.name for op in preview.rerun] == ["reserve-room"]
    assert [op.name for op in preview.replayed] == ["check-availability"]

    fault_switch_set("booking.reserve_room", disabled=True)  # the operator fixed the outage
    services.execution_redrive(failed.arn)
    redriven = finished(driver, failed)
    assert redriven.status == "SUCCEEDED", redriven.error
    assert json.loads(redriven.result)["status"] == "confirmed"
    assert attempts("booking.availability", "rd-1") == 1  # replayed, not run again
    assert Operation.objects.get(execution=redriven, name="reserve-room").status == "SUCCEEDED"


def test_only_failed_or_timed_out_executions_can_be_redriven(driver: EngineDriver) -> None:
    done = finished(driver, start("order-processing", {"order_id": "rd-2"}))
    with pytest.raises(ResourceConflict):
        services.execution_redrive(done.arn)


def test_rerun_starts_a_new_execution_with_the_same_or_edited_input(driver: EngineDriver) -> None:
    original = finished(driver, start("order-processing", {"order_id": "rd-3"}))
    same = services.execution_rerun(original.arn)
    edited = services.execution_rerun(original.arn, json.dumps({"order_id": "rd-4"}))
    assert same.pk != original.pk and same.input_payload == original.input_payload
    assert json.loads(edited.input_payload) == {"order_id": "rd-4"}
    assert finished(driver, edited).status == "SUCCEEDED"


# --- interrupted at-most-once operations ------------------------------------------------------

INTERRUPTED_DEPOSIT = {"faults": {"payment.charge": "interrupt"}}


def names(ops: list[Operation]) -> list[str]:
    return [op.name for op in ops]


def interrupted_booking(driver: EngineDriver, booking_id: str) -> Execution:
    """A booking whose AT_MOST_ONCE deposit step charged the card, then lost its worker."""
    failed = finished(driver, start("booking", {"booking_id": booking_id, **INTERRUPTED_DEPOSIT}))
    assert failed.status == "FAILED" and failed.error["ErrorType"].endswith(".StepError")
    assert deposit(failed).error["ErrorType"] == services.STEP_INTERRUPTED_ERROR_TYPE
    assert count("payment", "charge", booking_id) == 1
    return failed


def deposit(execution: Execution) -> Operation:
    return Operation.objects.get(execution=execution, name="take-deposit")


def test_the_preview_names_interrupted_steps_apart_from_what_runs_again(driver: EngineDriver) -> None:
    failed = interrupted_booking(driver, "ri-1")
    preview = services.redrive_preview(failed)
    assert names(preview.interrupted) == ["take-deposit"]
    assert preview.rerun == [] and preview.resumed == []
    assert names(preview.replayed) == ["check-availability", "reserve-room"]
    accepted = services.redrive_preview(failed, rerun_interrupted=True)
    assert names(accepted.rerun) == ["take-deposit"] and names(accepted.interrupted) == ["take-deposit"]


def test_redrive_keeps_an_interrupted_step_failed_and_its_body_does_not_run(driver: EngineDriver) -> None:
    failed = interrupted_booking(driver, "ri-2")
    redriven = operator.redrive(Actor.cli(), failed.arn, "worker died")
    assert names(redriven.plan.interrupted) == ["take-deposit"] and redriven.plan.rerun == []
    again = finished(driver, failed)
    # The handler got the StepInterruptedError back; the booking demo has no compensation for it.
    assert again.status == "FAILED" and again.error == failed.error
    assert count("payment", "charge", "ri-2") == 1 and attempts("payment.charge", "ri-2") == 1
    assert deposit(again).status == "FAILED"
    entry = AuditEntry.objects.get(action="execution.redrive")
    assert entry.details == {
        "reason": "worker died",
        "rerun_interrupted": False,
        "interrupted": ["take-deposit"],
    }


def test_redrive_that_accepts_runs_the_interrupted_step_once_more(driver: EngineDriver) -> None:
    failed = interrupted_booking(driver, "ri-3")
    operator.redrive(Actor.cli(), failed.arn, "charge checked by hand", rerun_interrupted=True)
    redriven = finished(driver, failed)
    assert redriven.status == "SUCCEEDED", redriven.error
    assert count("payment", "charge", "ri-3") == 2  # what the operator accepted: the body ran again
    assert count("booking", "reserve_room", "ri-3") == 1  # replayed, not run again
    assert deposit(redriven).status == "SUCCEEDED"
    entry = AuditEntry.objects.get(action="execution.redrive")
    assert entry.details["rerun_interrupted"] is True and entry.details["interrupted"] == ["take-deposit"]


def test_the_cli_says_which_interrupted_steps_it_kept_or_ran_again(driver: EngineDriver) -> None:
    kept, accepted = interrupted_booking(driver, "ri-4"), interrupted_booking(driver, "ri-5")
    out = StringIO()
    call_command("durable", "redrive", kept.arn, "--reason", "retry", stdout=out)
    call_command("durable", "redrive", accepted.arn, "--rerun-interrupted", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "redriven; operations that run again: none"
    assert lines[2].startswith("interrupted, may have run, kept failed: take-deposit")
    assert lines[3] == "redriven; operations that run again: take-deposit"
    assert lines[5] == "interrupted, run again as accepted: take-deposit"
    assert finished(driver, kept).status == "FAILED" and finished(driver, accepted).status == "SUCCEEDED"
    choices = AuditEntry.objects.filter(action="execution.redrive", channel="cli").order_by("id")
    assert [entry.details["rerun_interrupted"] for entry in choices] == [False, True]


def test_a_failed_step_still_runs_again_beside_a_kept_interrupted_one(driver: EngineDriver) -> None:
    register("two-payments", two_payments)
    failed = finished(driver, start("two-payments", {"key": "ri-6"}))
    assert failed.status == "FAILED"
    preview = services.redrive_preview(failed)
    assert names(preview.interrupted) == ["charge-card"]
    assert names(preview.rerun) == ["settle", "book-ledger"]  # the failed step and its context
    fault_switch_set("payment.refund", disabled=True)
    services.execution_redrive(failed.arn)
    redriven = finished(driver, failed)
    assert redriven.status == "SUCCEEDED", redriven.error
    assert json.loads(redriven.result) == {"charge": "interrupted", "ledger": "booked"}
    assert count("payment", "charge", "ri-6") == 1


@durable_execution
def two_payments(event: dict[str, Any], context: DurableContext) -> dict[str, str]:
    """An interrupted charge the handler tolerates, then a context whose step fails until fixed."""
    payments = Payments(
        Faults.from_input({"faults": {"payment.charge": "interrupt", "payment.refund": "fail"}})
    )
    key = event["key"]
    try:
        context.step(lambda _: payments.charge(key, 100, "tok"), name="charge-card", config=money_step({}))
        charge = "charged"
    except StepError:
        charge = "interrupted"

    def book(_: object) -> str:
        payments.refund(key, "ch-x", 1)
        return "booked"

    def settle(child: DurableContext) -> str:
        return child.step(book, name="book-ledger", config=retrying_step({"max_attempts": 1}))

    return {"charge": charge, "ledger": context.run_in_child_context(settle, name="settle")}


# --- a plain call whose worker died -----------------------------------------------------------

PLAIN_CALLS: list[Any] = []


def plain_target(event: Any, context: Any) -> str:
    PLAIN_CALLS.append(event)
    return "called"


@durable_execution
def plain_caller(event: Any, context: DurableContext) -> str:
    return context.invoke("plain-target", {}, name="call-target")


def lost_plain_call(driver: EngineDriver) -> Execution:
    """A caller whose plain call was claimed by a worker that died: FAILED, the target never called."""
    PLAIN_CALLS.clear()
    register("plain-target", plain_target, durable=False)
    register("plain-caller", plain_caller)
    FunctionVersion.objects.filter(function__name="plain-target").update(timeout_seconds=1)
    execution = start("plain-caller")
    driver.invoker.run_execution(execution.pk)
    op = Operation.objects.get(execution=execution, type="CHAINED_INVOKE")
    assert services.plain_invoke_claim(execution.pk, op.operation_id) is not None  # then the worker dies
    driver.clock.advance(120)  # past the claim (1 s Timeout + the lease), within the execution timeout
    failed = finished(driver, execution)
    assert failed.status == "FAILED" and PLAIN_CALLS == []
    return failed


def test_a_lost_plain_call_is_interrupted_and_kept_unless_accepted(driver: EngineDriver) -> None:
    failed = lost_plain_call(driver)
    assert names(services.redrive_preview(failed).interrupted) == ["call-target"]
    services.execution_redrive(failed.arn)
    assert finished(driver, failed).status == "FAILED" and PLAIN_CALLS == []
    services.execution_redrive(failed.arn, rerun_interrupted=True)
    redriven = finished(driver, failed)
    assert redriven.status == "SUCCEEDED" and json.loads(redriven.result) == "called"
    assert PLAIN_CALLS == [{}]
