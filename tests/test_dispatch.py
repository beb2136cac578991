"""Timers fired in bulk, wake-up hints only where a worker needs one, workers claiming due work.

The engine driver's clock stands still unless told to move, and its sink only collects
hints (no worker runs unless a test runs one), so each test sees exactly what the
services and the scheduler did.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import CallbackConfig, Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy
from django.db import connections, transaction

from executions import services
from executions.engine import effects as dispatch
from executions.engine.functions import function_register
from executions.engine.transitions import TIMER_EXECUTION_FIELDS
from executions.models import Execution, HistoryEvent, Operation
from executions.workers import scheduler
from tests.engine_driver import (
    CollectingSink,
    EngineDriver,
    callback_id,
    engine_driver,
    handler_path,
    refreshed,
    register,
    start,
    started_callback,
)

pytestmark = pytest.mark.django_db(transaction=True)


@durable_execution
def napping(event: Any, context: DurableContext) -> str:
    context.wait(Duration.from_seconds(30), name="nap")
    return "rested"


@durable_execution
def short_callback(event: Any, context: DurableContext) -> Any:
    callback = context.create_callback(name="reply", config=CallbackConfig(timeout=Duration.from_seconds(20)))
    return callback.result()


def _fails_once(step: StepContext) -> int:
    if step.attempt <= 1:
        raise RuntimeError("not yet")
    return step.attempt


@durable_execution
def flaky(event: Any, context: DurableContext) -> int:
    retry = create_retry_strategy(
        RetryStrategyConfig(max_attempts=3, initial_delay=Duration.from_seconds(10))
    )
    return context.step(_fails_once, name="flaky", config=StepConfig(retry_strategy=retry))


@durable_execution
def three_callbacks(event: Any, context: DurableContext) -> list[Any]:
    callbacks = [context.create_callback(name=name) for name in ("first", "second", "third")]
    return [callback.result() for callback in callbacks]


@durable_execution
def echo(event: Any, context: DurableContext) -> Any:
    return context.step(lambda _: event, name="echo")


class QueueSink(CollectingSink):
    """A broker queue nobody consumes: every hint sent waits in it."""

    def waiting(self) -> int:
        return len(self.items)


@pytest.fixture
def driver() -> Iterator[EngineDriver]:
    with engine_driver() as running:
        yield running


# --- timers fired in bulk ------------------------------------------------------------------


def waiting_executions(driver: EngineDriver) -> list[Execution]:
    """One execution per kind of timer, each run until it waits on it."""
    register("napping", napping)
    register("short-callback", short_callback)
    register("flaky", flaky)
    function_register(name="napping-briefly", handler=handler_path(napping), execution_timeout=20)
    executions = [
        start(name) for name in ("napping", "short-callback", "flaky", "napping-briefly", "napping")
    ]
    driver.settle()
    services.execution_pause(executions[-1].arn)  # a paused execution's timers fire too
    driver.sink.items.clear()
    return executions


def snapshot(execution: Execution, fired_at: datetime.datetime) -> dict[str, Any]:
    """What firing timers at ``fired_at`` wrote, as alike as two executions of one handler can be."""
    row = refreshed(execution)
    operations = Operation.objects.filter(execution=execution).exclude(type="EXECUTION")
    events = HistoryEvent.objects.filter(execution=execution, timestamp__gte=fired_at).exclude(
        operation_id=row.invocation_id
    )
    return {
        "execution": {name: getattr(row, name) for name in (*TIMER_EXECUTION_FIELDS, "status", "error")},
        "operations": list(
            operations.values_list(
                "operation_id", "status", "touched_seq", "timer_at", "error", "next_attempt_at", "ended_at"
            )
        ),
        "events": list(events.values_list("event_id", "event_type", "operation_id", "timestamp", "details")),
    }


def test_a_batch_fires_timers_as_one_at_a_time_does(driver: EngineDriver) -> None:
    one_by_one = waiting_executions(driver)
    batched = waiting_executions(driver)
    driver.clock.advance(30)
    now = driver.clock.now()

    assert sum(services.timers_fire_due(execution.pk) for execution in one_by_one) == 5
    hints_one_by_one = [("wake", execution.pk) for execution in one_by_one]
    assert sorted(driver.sink.items) == sorted(hints_one_by_one[:3] + hints_one_by_one[4:])
    driver.sink.items.clear()
    assert services.timers_fire_batch(now, 200) == (5, 5)
    assert sorted(driver.sink.items) == sorted(
        [("wake", execution.pk) for execution in (*batched[:3], batched[4])]
    )

    for alone, together in zip(one_by_one, batched, strict=True):
        assert snapshot(together, now) == snapshot(alone, now)
    nap, callback, retry, timed_out, paused = (snapshot(execution, now) for execution in batched)
    assert [event[1] for event in nap["events"]][-1] == "WaitSucceeded"
    assert [event[1] for event in callback["events"]][-1] == "CallbackTimedOut"
    assert retry["operations"][0][1] == "READY"
    assert (timed_out["execution"]["status"], timed_out["execution"]["wake_at"]) == ("TIMED_OUT", None)
    assert [event[1] for event in paused["events"]][-1] == "WaitSucceeded"
    assert services.timers_fire_batch(now, 200) == (0, 0)  # each timer fires once


def test_fired_timers_reach_the_handler(driver: EngineDriver) -> None:
    executions = waiting_executions(driver)
    services.execution_resume(executions[-1].arn)
    driver.clock.advance(30)
    driver.settle()
    driver.clock.advance(30)  # the step's retry comes due 10 s after its READY attempt failed...
    driver.settle()
    results = [(row.status, row.result) for row in map(refreshed, executions)]
    assert results == [
        ("SUCCEEDED", '"rested"'),
        ("FAILED", None),  # the callback timed out
        ("SUCCEEDED", "2"),
        ("TIMED_OUT", None),
        ("SUCCEEDED", '"rested"'),
    ]


def test_batches_racing_each_other_fire_each_timer_once(
    driver: EngineDriver, requires_postgresql: None
) -> None:
    register("napping", napping)
    executions = [start("napping") for _ in range(30)]
    driver.settle()
    driver.sink.items.clear()
    driver.clock.advance(30)
    now = driver.clock.now()
    barrier = threading.Barrier(3)
    fired: list[int] = []

    def fire_in_small_batches() -> None:
        try:
            barrier.wait()
            while (batch := services.timers_fire_batch(now, 4))[0]:
                fired.append(batch[1])
        finally:
            connections.close_all()

    threads = [threading.Thread(target=fire_in_small_batches) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(fired) == 30
    for execution in executions:
        types = list(HistoryEvent.objects.filter(execution=execution).values_list("event_type", flat=True))
        assert types.count("WaitSucceeded") == 1
        ids = list(HistoryEvent.objects.filter(execution=execution).values_list("event_id", flat=True))
        assert ids == list(range(1, len(ids) + 1))
    assert sorted(driver.sink.items) == sorted(("wake", execution.pk) for execution in executions)
    driver.settle()
    assert {refreshed(execution).status for execution in executions} == {"SUCCEEDED"}


# --- finishing an invocation, and hints ----------------------------------------------------------


def complete(execution: Execution, name: str, result: bytes) -> None:
    services.callback_succeed(callback_id(started_callback(execution, name)), result)


def test_finish_says_whether_the_next_invocation_is_due_and_no_hint_goes_to_a_held_execution(
    driver: EngineDriver,
) -> None:
    register("three-callbacks", three_callbacks)
    execution = start("three-callbacks")
    driver.settle()  # suspended on the first of three callbacks
    complete(execution, "first", b"a")
    assert driver.sink.items == [("wake", execution.pk)]
    driver.sink.items.clear()

    held = services.invocation_begin(execution.pk, worker="w")
    assert held is not None
    # Nothing happened while it ran, and it waits on callbacks: no invocation is due.
    assert services.invocation_finish(execution.pk, held.invocation, output={"Status": "PENDING"}) is False

    complete(execution, "second", b"b")
    assert driver.sink.items == [("wake", execution.pk)]
    driver.sink.items.clear()
    held = services.invocation_begin(execution.pk, worker="w")
    assert held is not None
    complete(execution, "third", b"c")  # while a worker holds the execution
    assert driver.sink.items == []  # no hint: that worker runs the next invocation itself
    assert refreshed(execution).dispatched_at is None
    assert services.invocation_finish(execution.pk, held.invocation, output={"Status": "PENDING"}) is True
    # Finishing it again (a retried commit) changes nothing and begins nothing.
    assert services.invocation_finish(execution.pk, held.invocation, output={"Status": "PENDING"}) is False

    assert driver.invoker.run_execution(execution.pk) == 1
    assert (refreshed(execution).status, refreshed(execution).result) == ("SUCCEEDED", '["a", "b", "c"]')
    assert driver.sink.items == []


def test_finish_of_a_raised_or_last_invocation_says_nothing_is_due(driver: EngineDriver) -> None:
    register("echo", echo)
    execution = start("echo", {"n": 1})
    held = services.invocation_begin(execution.pk, worker="w")
    assert held is not None
    error = {"ErrorType": "RuntimeError", "ErrorMessage": "boom"}
    assert services.invocation_finish(execution.pk, held.invocation, raised=error) is False  # retried later
    assert services.invocation_claim_next(worker="w") is None
    driver.clock.advance(5)
    held = services.invocation_claim_next(worker="w")
    assert held is not None and held.execution_id == execution.pk
    output = {"Status": "SUCCEEDED", "Result": "1"}
    assert services.invocation_finish(execution.pk, held.invocation, output=output) is False
    assert refreshed(execution).status == "SUCCEEDED"


def test_hints_only_top_up_the_queue_and_the_scheduler_adds_none_while_messages_wait() -> None:
    # A backlog: far more executions than workers, whose every hint waits in the queue.
    register("echo", echo)
    with engine_driver() as driver:
        sink = QueueSink()
        dispatch.set_local_sink(sink)
        executions = [start("echo", {"n": n}) for n in range(3 * dispatch.HINT_BACKLOG)]
        assert len(sink.items) == dispatch.HINT_BACKLOG  # one each for the first ones, then none
        assert len(set(sink.items)) == len(sink.items)
        for _ in range(180):  # three minutes of ticks: every hint is still waiting, so no re-send
            driver.clock.advance(1)
            scheduler.tick()
        assert len(sink.items) == dispatch.HINT_BACKLOG

        sink.items.clear()  # the workers took them (and all messages were lost)
        driver.clock.advance(1)
        scheduler.tick()  # the queue is empty: the work waiting longest is hinted again
        assert len(set(sink.items)) == dispatch.HINT_BACKLOG
        assert set(sink.items) <= {("wake", execution.pk) for execution in executions}


def test_plain_calls_are_always_hinted() -> None:
    sink = QueueSink([("wake", n) for n in range(dispatch.HINT_BACKLOG)])
    dispatch.set_local_sink(sink)
    try:
        dispatch.send([dispatch.Wake(100), dispatch.PlainInvoke(100, "op"), dispatch.Wake(101)])
    finally:
        dispatch.set_local_sink(None)
    assert sink.items[dispatch.HINT_BACKLOG :] == [("plain_invoke", (100, "op"))]


# --- workers claiming due work -----------------------------------------------------------------


def test_claims_take_resuming_executions_first_then_the_oldest_and_pass_over_what_is_not_due(
    driver: EngineDriver,
) -> None:
    register("echo", echo)
    register("napping", napping)
    napper = start("napping")
    driver.settle()  # waits 30 s
    paused = start("echo", {"n": 0})
    services.execution_pause(paused.arn)
    fresh = []
    for n in range(3):
        driver.clock.advance(1)
        fresh.append(start("echo", {"n": n}))
    assert services.invocation_claim_next(worker="w") is not None  # the oldest, fresh[0]
    held = services.invocation_begin(fresh[1].pk, worker="elsewhere")
    assert held is not None
    later = start("echo", {"n": 3})
    driver.clock.advance(27.5)
    assert services.timers_fire_batch(driver.clock.now(), 10) == (1, 1)  # the napper resumes, due last

    claimed = [services.invocation_claim_next(worker="w") for _ in range(4)]
    # Resuming before starting, each kind oldest first; nothing held, paused or not due.
    assert [None if c is None else c.execution_id for c in claimed] == [
        napper.pk,
        fresh[2].pk,
        later.pk,
        None,
    ]
    assert refreshed(paused).invocation_count == 0


def test_a_claim_passes_over_an_execution_another_transaction_holds(
    driver: EngineDriver, requires_postgresql: None
) -> None:
    register("echo", echo)
    first = start("echo", {"n": 1})
    driver.clock.advance(1)
    second = start("echo", {"n": 2})
    holding, release = threading.Event(), threading.Event()

    def hold_first() -> None:
        try:
            with transaction.atomic():
                Execution.objects.select_for_update().get(pk=first.pk)
                holding.set()
                release.wait(30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_first)
    holder.start()
    try:
        assert holding.wait(30)
        claimed = services.invocation_claim_next(worker="w")
        assert claimed is not None and claimed.execution_id == second.pk  # not waiting for the lock
        assert services.invocation_claim_next(worker="w") is None
    finally:
        release.set()
        holder.join()
    claimed = services.invocation_claim_next(worker="w")
    assert claimed is not None and claimed.execution_id == first.pk


def test_a_drain_runs_every_due_execution_without_a_hint_each(driver: EngineDriver) -> None:
    register("echo", echo)
    register("napping", napping)
    executions = [start("echo", {"n": n}) for n in range(5)] + [start("napping")]
    driver.sink.items.clear()  # every hint lost

    assert driver.invoker.drain() == 6
    assert [refreshed(execution).status for execution in executions] == ["SUCCEEDED"] * 5 + ["RUNNING"]
    driver.clock.advance(30)
    scheduler.tick()  # fires the wait and hints it
    driver.sink.items.clear()
    assert driver.invoker.drain() == 1
    assert refreshed(executions[-1]).status == "SUCCEEDED"


def test_a_drain_stops_when_asked(driver: EngineDriver) -> None:
    register("echo", echo)
    executions = [start("echo", {"n": n}) for n in range(3)]
    assert driver.invoker.drain(stop=lambda: True) == 0
    assert driver.invoker.drain(max_seconds=60) == 3
    assert {refreshed(execution).status for execution in executions} == {"SUCCEEDED"}
    more = [start("echo", {"n": n}) for n in range(3, 5)]
    driver.sink.items.clear()
    assert driver.invoker.drain(max_seconds=0) == 0  # out of time at once: hands over with a hint
    assert [kind for kind, _ in driver.sink.items] == ["wake"]  # naming the last one it ran
    assert driver.invoker.drain() == 2
    assert {refreshed(execution).status for execution in more} == {"SUCCEEDED"}
