"""The scheduler re-sends wake-up hints with backoff: workers that are down are not flooded.

No worker runs here: the driver's sink only collects the hints, and the test clock
moves a second per scheduler tick.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aws_durable_execution_sdk_python import DurableContext, durable_execution
from django.test import override_settings

from executions.models import Execution, Operation
from executions.workers import scheduler
from tests.engine_driver import EngineDriver, engine_driver, register, start

pytestmark = pytest.mark.django_db(transaction=True)

TICK = 1.0
MAX_PAUSE = 30
# The first re-send after 5 s, then each pause as long as the work had waited, up to MAX_PAUSE.
HINTS_IN_THREE_MINUTES = [0, 5, 10, 20, 40, 70, 100, 130, 160]


def plain_target(event: Any, context: Any) -> dict[str, Any]:
    return {"ok": True}


@durable_execution
def plain_caller(event: dict[str, Any], context: DurableContext) -> Any:
    return context.invoke("backoff-target", {}, name="call-target")


@pytest.fixture
def driver() -> Iterator[EngineDriver]:
    register("backoff-target", plain_target, durable=False)
    register("backoff-caller", plain_caller, timeout=3600)  # longer than the minutes ticked here
    with engine_driver() as running, override_settings(DURABLE_REDISPATCH_MAX_SECONDS=MAX_PAUSE):
        yield running


def hint_moments(driver: EngineDriver, kind: str, target: Any, seconds: float) -> list[float]:
    """Tick the scheduler for ``seconds``; when (seconds from now) each hint for ``target`` went out."""
    began = driver.clock.now()
    moments = [0.0] * _take(driver, kind, target)  # sent before the first tick (by the start itself)
    for _ in range(int(seconds / TICK)):
        driver.clock.advance(TICK)
        scheduler.tick()
        moments += [(driver.clock.now() - began).total_seconds()] * _take(driver, kind, target)
    return moments


def _take(driver: EngineDriver, kind: str, target: Any) -> int:
    mine = [item for item in driver.sink.items if item == (kind, target)]
    driver.sink.items.clear()
    return len(mine)


def test_a_pending_plain_call_with_no_worker_gets_hints_with_backoff(driver: EngineDriver) -> None:
    execution = start("backoff-caller")
    driver.sink.items.clear()
    driver.invoker.run_execution(execution.pk)  # the handler runs until it waits on the call
    op = Operation.objects.get(execution=execution, type="CHAINED_INVOKE")
    target = (execution.pk, op.operation_id)
    assert op.invoke_dispatch_pending

    moments = hint_moments(driver, "plain_invoke", target, seconds=180)

    # The checkpoint's own hint, then re-sends at 5, 10, 20, 40 s...: 9 in three minutes, where a
    # hint every tick (0.5 s) made 360.
    assert moments == HINTS_IN_THREE_MINUTES
    op.refresh_from_db()
    assert op.invoke_dispatch_pending and op.status == "STARTED"  # still waiting: only hints were sent


def test_a_due_execution_with_no_worker_gets_hints_with_backoff(driver: EngineDriver) -> None:
    execution = start("backoff-caller")

    moments = hint_moments(driver, "wake", execution.pk, seconds=180)

    assert moments == HINTS_IN_THREE_MINUTES  # the start's own hint, then 5, 10, 20 s... (was every 5 s)
    assert Execution.objects.get(pk=execution.pk).invocation_count == 0


def test_a_hint_lost_while_work_piles_up_is_replaced_quickly_again_once_picked_up(
    driver: EngineDriver,
) -> None:
    # An execution that waited long (backed-off hints) and was then invoked starts afresh:
    # its next due invocation is re-hinted 5 s after a lost hint, not a minute.
    execution = start("backoff-caller")
    assert hint_moments(driver, "wake", execution.pk, seconds=90)[-1] == 70
    driver.invoker.run_execution(execution.pk)  # a worker finally runs it: it now waits on the call
    op = Operation.objects.get(execution=execution, type="CHAINED_INVOKE")
    driver.invoker.run_plain_invoke(execution.pk, op.operation_id)  # the call asks for an invocation
    assert _take(driver, "wake", execution.pk) == 1  # ...whose hint is then lost

    assert hint_moments(driver, "wake", execution.pk, seconds=12) == [5, 10]


def test_several_schedulers_send_one_hint_between_them(driver: EngineDriver) -> None:
    execution = start("backoff-caller")
    driver.sink.items.clear()
    driver.clock.advance(5)
    scheduler.tick()
    scheduler.tick()  # a second scheduler, at the same moment
    assert _take(driver, "wake", execution.pk) == 1
    assert Execution.objects.get(pk=execution.pk).dispatched_at == driver.clock.now()
    driver.clock.advance(4.5)
    scheduler.tick()
    assert _take(driver, "wake", execution.pk) == 0
