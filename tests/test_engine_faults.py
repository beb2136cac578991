"""Engine faults: transient database errors are retried, a dead worker's plain call is recovered.

Transient errors are injected with Django's ``connection.execute_wrapper`` on the
thread that runs the service (the test thread, or the driver's worker thread).
On PostgreSQL the engine's hot-path writes bypass Django's cursor
(``executions.engine.rows`` runs them on psycopg's own), so there the injector also
wraps that cursor.
"""

from __future__ import annotations

import datetime
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.exceptions import InvokeError
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.test import override_settings

from executions import services
from executions.engine import checkpoint as checkpoint_service
from executions.engine import rows
from executions.engine.db_retry import Transient, classify, retry_transient
from executions.engine.errors import InvalidParameterValue, ResourceConflict
from executions.models import Execution, HistoryEvent, Invocation, Operation
from executions.workers import scheduler
from tests.engine_driver import engine_driver, refreshed, register, start

pytestmark = pytest.mark.django_db(transaction=True)

LEASE_SECONDS = 30


# --- injecting transient errors ------------------------------------------------------


def locked() -> Exception:
    return OperationalError("database is locked")


def serialization_failure() -> Exception:
    return _django_wrapped(psycopg.errors.SerializationFailure("could not serialize access"))


def lost_connection() -> Exception:
    return _django_wrapped(psycopg.OperationalError("server closed the connection unexpectedly"))


def _django_wrapped(cause: Exception) -> Exception:
    """What Django raises for a driver error: its own class, with the driver's as the cause."""
    error = OperationalError(str(cause))
    error.__cause__ = cause
    return error


def is_write(sql: str) -> bool:
    return sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))


def touches_operations(sql: str) -> bool:
    return "executions_operation" in sql


@dataclass
class Injector:
    """Raises ``make_error()`` for the first ``times`` matching statements once armed."""

    make_error: Callable[[], Exception]
    times: int
    matches: Callable[[str], bool] = touches_operations
    armed: bool = True
    raised: int = 0
    statements: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, sql: str) -> None:
        with self._lock:
            if not self.armed or self.raised >= self.times or not self.matches(sql):
                return
            self.raised += 1
            self.statements.append(sql)
        raise self.make_error()

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        """Django's execute_wrapper signature."""
        self.check(sql)
        return execute(sql, params, many, context)


class _CheckedCursor:
    """psycopg's own cursor, as ``executions.engine.rows`` uses it on PostgreSQL, with the injector."""

    def __init__(self, cursor: Any, injector: Injector) -> None:
        self._cursor = cursor
        self._injector = injector

    def execute(self, sql: str, params: Any = None) -> Any:
        self._injector.check(sql)
        return self._cursor.execute(sql, params)

    def __enter__(self) -> _CheckedCursor:
        self._cursor.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._cursor.__exit__(*exc_info)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


@contextmanager
def injected(
    injector: Injector,
    monkeypatch: pytest.MonkeyPatch,
    on_thread: Callable[[Callable[[], Any]], Any] | None = None,
) -> Iterator[Injector]:
    """Install ``injector`` on this thread's connection, or on the thread ``on_thread`` runs on."""
    run = on_thread or (lambda fn: fn())
    wrapper = run(lambda: connection.execute_wrapper(injector))
    run(wrapper.__enter__)
    if connection.vendor == "postgresql":
        raw_cursor = rows._cursor
        monkeypatch.setattr(rows, "_cursor", lambda db: _CheckedCursor(raw_cursor(db), injector))
    try:
        yield injector
    finally:
        run(lambda: wrapper.__exit__(None, None, None))


def retry_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "executions.engine.db_retry" and r.levelno == logging.WARNING
    ]


# --- handlers ------------------------------------------------------------------------

CALLS: list[Any] = []  # the plain target's calls, in this process
ARM_ON_CALL: list[Injector] = []  # injectors the target arms: what comes next is the completion


def fault_target(event: Any, context: Any) -> dict[str, Any]:
    """Plain target: records the call, then arms the injector for the completion's statements."""
    CALLS.append(event)
    for injector in ARM_ON_CALL:
        injector.armed = True
    return {"doubled": event["n"] * 2}


@durable_execution
def fault_caller(event: dict[str, Any], context: DurableContext) -> dict[str, Any]:
    try:
        return {"result": context.invoke("fault-target", {"n": event["n"]}, name="call-target")}
    except InvokeError as err:
        return {"error": {"type": err.error_type, "message": err.message}}


@pytest.fixture(autouse=True)
def plain_invoke_functions() -> Iterator[None]:
    CALLS.clear()
    ARM_ON_CALL.clear()
    register("fault-target", fault_target, durable=False)
    register("fault-caller", fault_caller)
    yield
    ARM_ON_CALL.clear()


def invoke_op(execution: Execution) -> Operation:
    return Operation.objects.get(execution=execution, type="CHAINED_INVOKE")


def event_count(execution: Execution, event_type: str) -> int:
    return HistoryEvent.objects.filter(execution=execution, event_type=event_type).count()


# --- plain-invoke completion under transient errors ----------------------------------------


@pytest.mark.parametrize(
    "make_error",
    [locked, serialization_failure, lost_connection],
    ids=["database-locked", "serialization-failure", "lost-connection"],
)
def test_plain_invoke_completion_survives_transient_errors(
    make_error: Callable[[], Exception],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="executions.engine.db_retry")
    injector = Injector(make_error, times=3, armed=False)
    ARM_ON_CALL.append(injector)
    with engine_driver() as driver, injected(injector, monkeypatch, on_thread=driver.invoker._db):
        execution = start("fault-caller", {"n": 21})
        driver.run_until(lambda: refreshed(execution).is_terminal)
    execution = refreshed(execution)
    assert injector.raised == 3 and all(touches_operations(sql) for sql in injector.statements)
    assert [r.getMessage().split(":")[0] for r in retry_warnings(caplog)] == ["plain_invoke_complete"] * 3
    assert execution.status == "SUCCEEDED"
    assert json.loads(execution.result) == {"result": {"doubled": 42}}
    assert CALLS == [{"n": 21}]  # called once
    assert invoke_op(execution).status == "SUCCEEDED"
    assert event_count(execution, "ChainedInvokeSucceeded") == 1


# --- a worker killed after its claim --------------------------------------------------------


def test_a_plain_call_whose_worker_died_fails_at_claim_expiry_and_is_not_called_again() -> None:
    with engine_driver() as driver:
        execution = start("fault-caller", {"n": 1})
        driver.invoker.run_execution(execution.pk)  # the handler runs until it waits on the invoke
        op = invoke_op(execution)
        claimed = services.plain_invoke_claim(execution.pk, op.operation_id)
        assert claimed is not None
        lease = datetime.timedelta(seconds=LEASE_SECONDS)
        assert claimed.invoke_claim_expires_at == driver.clock.now() + lease  # not the target's Timeout
        driver.clock.advance(LEASE_SECONDS - 1)
        assert services.plain_invoke_renew(execution.pk, op.operation_id)  # the worker renews it once,
        expires = driver.clock.now() + lease  # then dies
        assert invoke_op(execution).invoke_claim_expires_at == expires
        driver.settle()  # the hint finds the call claimed; nothing is due yet
        assert invoke_op(execution).status == "STARTED"

        driver.clock.advance_to(expires - datetime.timedelta(seconds=1))
        scheduler.tick()
        assert invoke_op(execution).status == "STARTED"  # a live worker may still be calling
        driver.clock.advance_to(expires)
        assert scheduler.tick() >= 1
        driver.run_until(lambda: refreshed(execution).is_terminal)

        services.plain_invoke_complete(execution.pk, op.operation_id, result='"late"')  # a zombie: ignored
        assert not services.plain_invoke_renew(execution.pk, op.operation_id)  # its renewer stops it
    execution = refreshed(execution)
    op = invoke_op(execution)
    assert CALLS == []  # never called: at most once
    assert op.status == "FAILED" and op.error["ErrorType"] == "Runtime.ExitError"
    assert "may or may not have run" in op.error["ErrorMessage"]
    assert execution.status == "SUCCEEDED"
    assert json.loads(execution.result) == {
        "error": {"type": "Runtime.ExitError", "message": op.error["ErrorMessage"]}
    }
    assert event_count(execution, "ChainedInvokeFailed") == 1
    assert event_count(execution, "ChainedInvokeSucceeded") == 0


def test_a_recorded_outcome_is_not_recovered_and_a_claim_is_taken_once() -> None:
    with engine_driver() as driver:
        execution = start("fault-caller", {"n": 2})
        driver.invoker.run_execution(execution.pk)
        op = invoke_op(execution)
        assert services.plain_invoke_claim(execution.pk, op.operation_id) is not None
        assert services.plain_invoke_claim(execution.pk, op.operation_id) is None
        services.plain_invoke_complete(execution.pk, op.operation_id, result='{"doubled": 4}')
        services.plain_invoke_complete(execution.pk, op.operation_id, result='"again"')  # a retried commit
        assert not services.plain_invoke_renew(execution.pk, op.operation_id)  # the outcome ended it
        driver.clock.advance(LEASE_SECONDS + 1)
        assert services.plain_invoke_recover(execution.pk, op.operation_id) is False
        driver.run_until(lambda: refreshed(execution).is_terminal)
    execution = refreshed(execution)
    assert json.loads(execution.result) == {"result": {"doubled": 4}}
    assert event_count(execution, "ChainedInvokeSucceeded") == 1
    assert event_count(execution, "ChainedInvokeFailed") == 0


# --- checkpoint and invocation_finish under a locked database ------------------------------


@durable_execution
def one_step(event: Any, context: DurableContext) -> Any:
    return context.step(lambda _: "done", name="work")


def test_checkpoint_and_invocation_finish_survive_a_locked_first_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register("one-step", one_step)
    execution = start("one-step", {})
    invocation = services.invocation_begin(execution.pk, worker="w")
    update = {
        "Id": "s1",
        "Type": "STEP",
        "Action": "SUCCEED",
        "SubType": "Step",
        "Name": "work",
        "Payload": '"done"',
    }
    with injected(Injector(locked, times=1, matches=is_write), monkeypatch) as injector:
        response = checkpoint_service.checkpoint(execution.arn, invocation.token, [update])
    assert injector.raised == 1
    assert response["NewExecutionState"]["Operations"][0]["Status"] == "SUCCEEDED"
    assert refreshed(execution).checkpoint_seq == 1
    assert Operation.objects.filter(execution=execution, operation_id="s1").count() == 1
    assert event_count(execution, "StepSucceeded") == 1

    output = {"Status": "SUCCEEDED", "Result": '"done"'}
    with injected(Injector(locked, times=1, matches=is_write), monkeypatch) as injector:
        services.invocation_finish(execution.pk, invocation.invocation, output=output)
    assert injector.raised == 1
    execution = refreshed(execution)
    assert (execution.status, execution.result, execution.lease_owner) == ("SUCCEEDED", '"done"', "")
    record = Invocation.objects.get(execution=execution)
    assert record.ended_at is not None and record.outcome == "SUCCEEDED"
    assert event_count(execution, "InvocationCompleted") == 1
    assert event_count(execution, "ExecutionSucceeded") == 1


# --- the retry helper ---------------------------------------------------------------------


def flaky(error: Callable[[], Exception], failures: int) -> tuple[Callable[[], str], list[int]]:
    """A decorated function failing ``failures`` times with ``error()``, and its call log."""
    calls: list[int] = []

    @retry_transient
    def write() -> str:
        calls.append(len(calls))
        if len(calls) <= failures:
            raise error()
        return "written"

    return write, calls


def test_transient_errors_are_retried_with_a_log_line_each(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="executions.engine.db_retry")
    write, calls = flaky(locked, failures=3)
    assert write() == "written"
    assert len(calls) == 4
    assert [r.getMessage().split(":")[0] for r in retry_warnings(caplog)] == ["flaky.<locals>.write"] * 3


@override_settings(DURABLE_DB_RETRY_SECONDS=0.3)
def test_retries_stop_when_the_time_budget_is_spent() -> None:
    write, calls = flaky(serialization_failure, failures=10_000)
    began = time.monotonic()
    with pytest.raises(OperationalError, match="could not serialize"):
        write()
    assert time.monotonic() - began < 0.3 + 0.1
    assert 2 <= len(calls) < 20  # retried with growing pauses, not spun


def test_no_retry_inside_an_outer_atomic_block() -> None:
    write, calls = flaky(locked, failures=1)
    with transaction.atomic(), pytest.raises(OperationalError):
        write()
    assert len(calls) == 1


@pytest.mark.parametrize(
    "error",
    [
        lambda: ResourceConflict("wrong state"),
        lambda: _with_cause(InvalidParameterValue("bad input"), OperationalError("database is locked")),
        lambda: IntegrityError("UNIQUE constraint failed"),
        lambda: OperationalError("no such table: executions_nothing"),
    ],
    ids=["service-error", "service-error-caused-by-lock", "integrity-error", "other-operational-error"],
)
def test_wrong_input_and_other_errors_are_never_retried(error: Callable[[], Exception]) -> None:
    write, calls = flaky(error, failures=1)
    with pytest.raises(type(error())):
        write()
    assert len(calls) == 1


def _with_cause(error: Exception, cause: Exception) -> Exception:
    error.__cause__ = cause
    return error


def test_a_lost_connection_is_closed_before_the_retry() -> None:
    raw_connections: list[Any] = []

    @retry_transient
    def write() -> int:
        connection.ensure_connection()
        raw_connections.append(connection.connection)
        if len(raw_connections) == 1:
            raise lost_connection()
        return Execution.objects.count()

    assert write() == 0
    first, second = raw_connections
    assert first is not second  # a fresh connection


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (OperationalError("database is locked"), Transient.RETRY),
        (sqlite3.OperationalError("database table is locked"), Transient.RETRY),
        (psycopg.errors.SerializationFailure("x"), Transient.RETRY),
        (psycopg.errors.DeadlockDetected("x"), Transient.RETRY),
        (_django_wrapped(psycopg.errors.DeadlockDetected("x")), Transient.RETRY),
        (psycopg.OperationalError("consuming input failed"), Transient.RECONNECT),
        (psycopg.errors.AdminShutdown("terminating connection"), Transient.RECONNECT),
        (InterfaceError("connection already closed"), Transient.RECONNECT),
        (psycopg.errors.UniqueViolation("x"), None),
        (psycopg.errors.QueryCanceled("statement timeout"), None),
        (OperationalError("disk I/O error"), None),
        (ResourceConflict("x"), None),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_transient_errors_are_told_apart(error: Exception, expected: Transient | None) -> None:
    assert classify(error) is expected
