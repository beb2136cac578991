"""Drives executions on the real engine, synchronously, with a test clock.

The services, checkpoint path, timers and invoker are the production ones;
only the transport differs: wake-up hints land in a list that the driver
drains on the calling thread, and the clock jumps to the next timer instead
of sleeping. The clock is the one thing tests may replace (DEVELOPERS.md).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from executions import services
from executions.engine import callback_ids, clock
from executions.engine import effects as dispatch
from executions.engine.functions import function_register
from executions.models import Execution, Function, FunctionVersion, Operation
from executions.queries import selectors
from executions.workers import scheduler
from executions.workers.invoker import Invoker
from tests.in_process_runner import InProcessRunner


class TestClock:
    """A clock that only moves when told to."""

    __test__ = False

    def __init__(self, start: datetime.datetime | None = None) -> None:
        self.current = start or datetime.datetime.now(datetime.UTC)

    def now(self) -> datetime.datetime:
        return self.current

    def advance_to(self, moment: datetime.datetime) -> None:
        if moment > self.current:
            self.current = moment

    def advance(self, seconds: float) -> None:
        self.current += datetime.timedelta(seconds=seconds)


@dataclass
class CollectingSink:
    """A WorkSink that queues hints for the driver to run on its own thread."""

    items: list[tuple[str, Any]] = field(default_factory=list)

    def submit_execution(self, execution_id: int) -> None:
        self.items.append(("wake", execution_id))

    def submit_plain_invoke(self, execution_id: int, operation_id: str) -> None:
        self.items.append(("plain_invoke", (execution_id, operation_id)))


class StuckError(AssertionError):
    pass


class EngineDriver:
    """Runs every execution to quiescence, then moves the clock to the next timer."""

    def __init__(self, test_clock: TestClock) -> None:
        self.clock = test_clock
        self.sink = CollectingSink()
        self.runner = InProcessRunner()
        self.invoker = Invoker("test-driver", self.runner)

    def close(self) -> None:
        self.invoker.close()
        self.runner.close()

    def settle(self, max_rounds: int = 10_000) -> None:
        """Run hinted and due work until nothing is left to do right now."""
        for _ in range(max_rounds):
            if self.sink.items:
                kind, target = self.sink.items.pop(0)
                if kind == "wake":
                    self.invoker.run_execution(target)
                else:
                    self.invoker.run_plain_invoke(*target)
                continue
            if scheduler.tick() == 0 and not self.sink.items:
                return
        raise StuckError("engine did not settle")

    def advance_to_next_timer(self) -> bool:
        """Jump to the earliest pending timer or retry; False when there is none."""
        moments = [
            moment
            for wake_at, due_at in Execution.objects.filter(status__in=("RUNNING", "PAUSED")).values_list(
                "wake_at", "invocation_due_at"
            )
            for moment in (wake_at, due_at)
            if moment is not None
        ]
        if not moments:
            return False
        self.clock.advance_to(min(moments))
        return True

    def run_until(self, done: Callable[[], bool], *, max_jumps: int = 500) -> None:
        for _ in range(max_jumps):
            self.settle()
            if done():
                return
            if not self.advance_to_next_timer():
                raise StuckError("nothing left to run and the condition is not met")
        raise StuckError("too many clock jumps")


@contextmanager
def engine_driver(start: datetime.datetime | None = None) -> Iterator[EngineDriver]:
    test_clock = TestClock(start)
    clock.set_clock(test_clock.now)
    driver = EngineDriver(test_clock)
    dispatch.set_local_sink(driver.sink)
    try:
        yield driver
    finally:
        dispatch.set_local_sink(None)
        clock.set_clock(None)
        driver.close()


# --- helpers for tests --------------------------------------------------------------


def handler_path(handler: Callable[..., Any]) -> str:
    return f"{handler.__module__}:{handler.__qualname__}"


def register_unchecked(name: str, handler: Callable[..., Any]) -> None:
    """A durable function whose handler registration would refuse (a plain callable), written
    straight to the tables: the only way to drive a runtime that raises outside the SDK."""
    function = Function.objects.create(name=name, handler=handler_path(handler))
    FunctionVersion.objects.create(function=function, version=1, handler=function.handler)


def register(name: str, handler: Callable[..., Any], *, durable: bool = True, timeout: int = 300) -> None:
    function_register(name=name, handler=handler_path(handler), durable=durable, execution_timeout=timeout)


def execution_tree(execution: Execution) -> list[Execution]:
    tree = [execution]
    for child in Execution.objects.filter(parent=execution):
        tree += execution_tree(child)
    return tree


def started_callback(execution: Execution, name: str) -> Operation | None:
    """The named CALLBACK op once it is STARTED, in the execution or its children."""
    ids = [e.pk for e in execution_tree(execution)]
    return Operation.objects.filter(
        execution_id__in=ids, type="CALLBACK", name=name, status="STARTED"
    ).first()


def callback_id(op: Operation) -> str:
    return callback_ids.callback_id_for(op.callback_seed)


def wire_operations(execution: Execution) -> list[dict[str, Any]]:
    return selectors.execution_operations(execution)


def refreshed(execution: Execution) -> Execution:
    return Execution.objects.get(pk=execution.pk)


def start(name: str, payload: Any = None, **kwargs: Any) -> Execution:
    text = payload if isinstance(payload, str) or payload is None else json.dumps(payload)
    return services.execution_start(function=name, input_payload=text, **kwargs).execution
