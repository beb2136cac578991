"""Redrive and re-run: a failed execution continues from its last good checkpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from durable_console.bootstrap import register_demo_functions
from examples import ledger
from examples.ledger import attempts
from examples.switches import fault_switch_set
from executions import services
from executions.errors import ResourceConflict
from executions.models import Execution, Operation
from tests.engine_driver import EngineDriver, engine_driver, refreshed, start

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
