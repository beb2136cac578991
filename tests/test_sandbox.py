"""Handlers run in sandbox children with Lambda's function limits.

The embedded worker pool and the scheduler run on threads of the test process,
as ``durable serve`` runs them; every handler runs in a sandbox child process
(``executions.workers.sandbox``) that the pool's threads supervise. The
handlers that misbehave are in ``tests/sandbox_handlers.py``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.test import override_settings

from executions import services
from executions.engine.functions import function_register
from executions.models import Execution, HistoryEvent, Invocation, InvocationOutcome
from executions.workers.embedded import EmbeddedWorkerPool
from executions.workers.scheduler import run_forever
from tests import sandbox_handlers
from tests.engine_driver import handler_path
from tests.polling import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

RETRY = {"DURABLE_INVOCATION_RETRY_DELAY_SECONDS": 0.2, "DURABLE_INVOCATION_MAX_ATTEMPTS": 2}


@pytest.fixture
def workers() -> Iterator[None]:
    """Four supervising worker threads and the scheduler, as `make run` has them."""
    stop = threading.Event()
    with override_settings(**RETRY):
        pool = EmbeddedWorkerPool(4).start()
        scheduler = threading.Thread(target=_scheduler, args=(stop,), daemon=True)
        scheduler.start()
        try:
            yield
        finally:
            stop.set()
            scheduler.join(timeout=10)
            pool.stop()


def _scheduler(stop: threading.Event) -> None:
    try:
        run_forever(stop, 0.05)
    finally:
        connections.close_all()


def register(name: str, handler: Any, **config: Any) -> str:
    function_register(name=name, handler=handler_path(handler), **config)
    return name


def start(function: str, payload: Any = None) -> Execution:
    return services.execution_start(function=function, input_payload=json.dumps(payload or {})).execution


def finished(execution: Execution, timeout: float = 60) -> Execution:
    return wait_until(
        lambda: (e := Execution.objects.get(pk=execution.pk)).is_terminal and e,
        timeout=timeout,
        message=f"{execution.arn} did not finish",
    )


def invocation_errors(execution: Execution) -> list[str]:
    events = HistoryEvent.objects.filter(execution=execution, event_type="InvocationCompleted")
    return [event.details.get("Error", {}).get("Payload", {}).get("ErrorType", "") for event in events]


def test_hung_handlers_time_out_and_do_not_block_other_executions(workers: None) -> None:
    register("sleeper", sandbox_handlers.sleeper, timeout_seconds=2)
    register("quick", sandbox_handlers.quick)
    sleepers = [start("sleeper") for _ in range(6)]
    wait_until(
        lambda: Invocation.objects.filter(ended_at__isnull=True).count() >= 4,
        timeout=30,
        message="the sleepers to take every worker",
    )
    # The sleepers never end by themselves, so any bound proves they block nothing; this
    # one leaves room for replacing killed sandboxes (1 s quiet, 4-5 s on a loaded machine).
    unrelated = finished(start("quick"), timeout=45)
    assert unrelated.status == "SUCCEEDED" and json.loads(unrelated.result) == "done"

    for sleeper in sleepers:
        ended = finished(sleeper, timeout=60)
        assert ended.status == "FAILED"
        assert ended.error["ErrorType"] == "Sandbox.Timedout"
        outcomes = list(Invocation.objects.filter(execution=ended).values_list("outcome", flat=True))
        assert outcomes == [InvocationOutcome.TIMEOUT] * 2
        assert invocation_errors(ended) == ["Sandbox.Timedout"] * 2
        message = Invocation.objects.filter(execution=ended).first().error["ErrorMessage"]
        assert "Task timed out after 2.00 seconds" in message


def test_a_timed_out_at_most_once_step_goes_through_its_retry_strategy(workers: None, tmp_path: Path) -> None:
    register("slow-at-most-once", sandbox_handlers.slow_at_most_once, timeout_seconds=2)
    marker = tmp_path / "attempts"
    execution = finished(start("slow-at-most-once", {"marker": str(marker)}), timeout=60)
    assert execution.status == "SUCCEEDED", execution.error
    # The interrupted attempt was not run blindly again: the SDK saw it STARTED, asked
    # the retry strategy, and attempt 2 ran once.
    assert json.loads(execution.result) == {"attempt": 2}
    assert marker.read_text().splitlines() == ["started", "started"]
    outcomes = list(Invocation.objects.filter(execution=execution).values_list("outcome", flat=True))
    assert outcomes[0] == InvocationOutcome.TIMEOUT and outcomes[-1] == InvocationOutcome.SUCCEEDED
    failed = HistoryEvent.objects.get(execution=execution, event_type="StepFailed")
    assert failed.details["Error"]["Payload"]["ErrorType"].endswith("StepInterruptedError")


def test_a_crashing_handler_costs_only_its_invocation(workers: None, tmp_path: Path) -> None:
    register("crash-once", sandbox_handlers.crash_once)
    execution = finished(start("crash-once", {"marker": str(tmp_path / "crashed")}), timeout=30)
    assert execution.status == "SUCCEEDED", execution.error
    assert json.loads(execution.result) == "survived"
    first, second = Invocation.objects.filter(execution=execution).order_by("number")
    assert first.outcome == InvocationOutcome.CRASH
    assert first.error["ErrorType"] == "Runtime.ExitError"
    assert "exit status 1" in first.error["ErrorMessage"]
    assert first.sandbox_pid and second.sandbox_pid and first.sandbox_pid != second.sandbox_pid
    assert invocation_errors(execution)[0] == "Runtime.ExitError"
    assert first.sandbox_pid != os.getpid()


def test_memory_past_the_limit_is_out_of_memory(workers: None) -> None:
    register("memory-hog", sandbox_handlers.memory_hog, memory_mb=256)
    register("huge-allocation", sandbox_handlers.huge_allocation, memory_mb=256)
    hog = finished(start("memory-hog", {"mb": 600}), timeout=60)
    huge = finished(start("huge-allocation", {"gb": 8}), timeout=60)
    for execution in (hog, huge):
        assert execution.status == "FAILED"
        assert execution.error["ErrorType"] == "Runtime.OutOfMemory"
        outcomes = set(Invocation.objects.filter(execution=execution).values_list("outcome", flat=True))
        assert outcomes == {InvocationOutcome.OOM}
    # The same function within its limit still runs: the host was never touched.
    within = finished(start("memory-hog", {"mb": 50}), timeout=30)
    assert within.status == "SUCCEEDED" and json.loads(within.result) == 50 * 1024 * 1024


def test_each_function_sees_its_own_environment(workers: None) -> None:
    register("env-a", sandbox_handlers.read_environment, environment={"GREETING": "hello from a"})
    register("env-b", sandbox_handlers.read_environment, environment={"GREETING": "hello from b"})
    register("env-none", sandbox_handlers.read_environment)
    runs = {name: start(name, {"name": "GREETING"}) for name in ("env-a", "env-b", "env-none", "env-a")}
    results = {name: json.loads(finished(execution).result) for name, execution in runs.items()}
    assert results == {"env-a": "hello from a", "env-b": "hello from b", "env-none": None}
    assert "GREETING" not in os.environ
