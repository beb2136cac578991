"""Connections that the database dropped are replaced, and a lease that cannot be kept stops its handler.

The end-to-end proof (real worker, scheduler and web processes, the database
restarted fast and immediate) is ``tests/test_faults_postgres.py``; these tests
pin down each piece on its own:

- a connection the server ended is dropped before the next unit of work, on
  every path (``db_retry.call``), where Django alone keeps failing on it;
- a COMMIT that reached the database but whose acknowledgement was lost is not
  applied twice: the retry answers as the first attempt would have (checkpoints,
  invocation begins, and units run with ``db_retry.call_verified``: ledger
  writes, plain-invoke claims);
- the lease renewer stops the handler (its sandbox child is killed, nothing is
  recorded) when the lease is taken, or when it cannot renew before expiry;
- a plain chained call's claim is renewed the same way: a call longer than the
  lease completes, and one whose claim was recovered meanwhile is stopped.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.db import OperationalError, connection, connections, transaction
from django.test import override_settings

from examples import ledger
from examples.models import LedgerEntry
from executions import services
from executions.engine import checkpoint as checkpoint_service
from executions.engine import db_retry
from executions.models import Execution, HistoryEvent, Invocation, Operation
from executions.workers import handler_db
from executions.workers.invoker import Invoker, SandboxRunner
from executions.workers.sandbox import close_shared_pool
from tests.e2e_handlers import calls_slow_plain, slow_plain, slow_steps
from tests.engine_driver import register, start
from tests.polling import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def lost_connection() -> OperationalError:
    """What Django raises when the server went away: its class, psycopg's as the cause."""
    error = OperationalError("server closed the connection unexpectedly")
    error.__cause__ = psycopg.OperationalError("server closed the connection unexpectedly")
    return error


def end_this_session() -> None:
    """Have the server end this thread's session, as a fast shutdown ends every session."""
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    with psycopg.connect(connection.connection.info.dsn, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", (pid,))


# --- a dropped connection ------------------------------------------------------------------


def count_executions() -> int:
    return Execution.objects.count()


def test_a_connection_the_server_ended_is_replaced_before_the_next_unit(requires_postgresql: None) -> None:
    end_this_session()
    with pytest.raises(OperationalError):
        count_executions()  # the first statement finds out
    assert db_retry.is_broken(connection)
    with pytest.raises(OperationalError):
        count_executions()  # Django alone keeps the broken connection: every statement fails
    broken = connection.connection

    assert db_retry.call(count_executions) == 0  # dropped first, then run on a new one
    assert connection.connection is not broken

    end_this_session()
    assert db_retry.call(count_executions) == 0  # ended under a unit: retried on a new connection


# --- a COMMIT whose acknowledgement was lost ------------------------------------------------


@pytest.fixture
def lost_acknowledgement(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Arms a COMMIT that goes through and then fails as if the connection dropped before the answer."""

    def arm() -> None:
        wrapper = connections["default"]  # this thread's
        commit = wrapper._commit

        def commit_then_lose_the_answer() -> None:
            monkeypatch.setattr(wrapper, "_commit", commit)  # once
            commit()
            raise lost_connection()

        monkeypatch.setattr(wrapper, "_commit", commit_then_lose_the_answer)

    return arm


def step(action: str, **extra: Any) -> dict[str, Any]:
    return {"Id": "s" * 64, "Type": "STEP", "Action": action, "SubType": "Step", "Name": "work", **extra}


def test_a_checkpoint_whose_commit_answer_was_lost_is_applied_once(
    lost_acknowledgement: Callable[[], None], caplog: pytest.LogCaptureFixture
) -> None:
    register("slow", slow_steps)
    execution = start("slow", {"key": "ack"})
    invocation = services.invocation_begin(execution.pk, worker="w")
    assert invocation is not None
    started = checkpoint_service.checkpoint(execution.arn, invocation.token, [step("START")])

    lost_acknowledgement()
    response = checkpoint_service.checkpoint(
        execution.arn, started["CheckpointToken"], [step("SUCCEED", Payload='"done"')]
    )

    # The answer the lost acknowledgement carried: the next token works, the step succeeded once.
    assert [op["Status"] for op in response["NewExecutionState"]["Operations"]] == ["SUCCEEDED"]
    assert Execution.objects.get(pk=execution.pk).checkpoint_seq == 2
    assert HistoryEvent.objects.filter(execution=execution, event_type="StepSucceeded").count() == 1
    after = checkpoint_service.checkpoint(execution.arn, response["CheckpointToken"], [])
    assert after["CheckpointToken"] != response["CheckpointToken"]
    assert any("had committed before the connection was lost" in r.message for r in caplog.records)


def test_an_invocation_whose_begin_answer_was_lost_is_returned_not_orphaned(
    lost_acknowledgement: Callable[[], None],
) -> None:
    register("slow", slow_steps)
    execution = start("slow", {"key": "begin"})

    lost_acknowledgement()
    invocation = services.invocation_begin(execution.pk, worker="w")

    assert invocation is not None and invocation.invocation == 1  # not None, left to expire as LOST
    assert Invocation.objects.filter(execution=execution).count() == 1
    response = checkpoint_service.checkpoint(execution.arn, invocation.token, [step("START")])
    assert response["CheckpointToken"]


def add_entry(key: str) -> int:
    with transaction.atomic():  # a unit of work: one transaction, like the ledger's attempt counter
        return LedgerEntry.objects.create(service="payment", action="charge", key=key).pk


def test_a_verified_unit_whose_commit_answer_was_lost_is_applied_once(
    requires_postgresql: None, lost_acknowledgement: Callable[[], None]
) -> None:
    lost_acknowledgement()
    db_retry.call(add_entry, "plain")  # what a plain retry does to an insert
    assert LedgerEntry.objects.filter(key="plain").count() == 2

    lost_acknowledgement()
    db_retry.call_verified(add_entry, "verified")  # the transaction's status is checked first
    assert LedgerEntry.objects.filter(key="verified").count() == 1


def test_a_ledger_write_whose_commit_answer_was_lost_is_written_once(
    requires_postgresql: None, lost_acknowledgement: Callable[[], None]
) -> None:
    try:
        # Armed on the handler database thread itself, outside a unit of work (a unit would commit).
        handler_db._executor().submit(lost_acknowledgement).result()
        ledger.record("payment", "charge", "handler-side")
        assert ledger.count("payment", "charge", "handler-side") == 1
    finally:
        ledger.close()


# --- the lease renewer ----------------------------------------------------------------------

LEASE_SECONDS = 1.5


@pytest.fixture
def slow_invocation() -> Iterator[dict[str, Any]]:
    """A slow step running in a real sandbox child, supervised by an invoker on a thread here."""
    with override_settings(DURABLE_LEASE_SECONDS=LEASE_SECONDS):
        register("slow", slow_steps)
        execution = start("slow", {"key": "lease", "sleep": 60})
        invoker = Invoker("lease-test-worker", SandboxRunner())
        worker = threading.Thread(target=invoker.run_execution, args=(execution.pk,), daemon=True)
        worker.start()
        try:
            wait_until(
                lambda: ledger.count("e2e", "slow-started", "lease"), timeout=60, message="the slow step"
            )
            yield {"execution": execution, "invoker": invoker, "worker": worker}
        finally:
            Execution.objects.filter(pk=execution.pk).update(lease_owner="")  # stops it if still running
            worker.join(timeout=30)
            invoker.close()
            close_shared_pool()
            ledger.close()


def killed_sandbox_pids(caplog: pytest.LogCaptureFixture) -> list[int]:
    return [
        record.args[0]
        for record in caplog.records
        if record.name == "executions.workers.sandbox" and "lease was lost" in record.getMessage()
    ]


def assert_stopped_and_nothing_recorded(running: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    wait_until(
        lambda: not running["worker"].is_alive(), timeout=10, message="the invoker to stop the handler"
    )
    (pid,) = killed_sandbox_pids(caplog)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the child running the handler is gone
    invocation = Invocation.objects.get(execution=running["execution"])
    assert invocation.ended_at is None  # the takeover records it (LOST), not this worker
    assert ledger.count("e2e", "slow-finished", "lease") == 0


def test_a_handler_whose_lease_was_taken_over_is_stopped(
    slow_invocation: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    execution = slow_invocation["execution"]
    Execution.objects.filter(pk=execution.pk).update(lease_owner="another-worker")  # a takeover

    assert_stopped_and_nothing_recorded(slow_invocation, caplog)
    assert any("lease lost (taken over)" in record.getMessage() for record in caplog.records)


def test_a_handler_whose_lease_cannot_be_renewed_is_stopped_before_it_expires(
    slow_invocation: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    invoker: Invoker = slow_invocation["invoker"]

    def unreachable(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        if "lease_expires_at" in sql and sql.lstrip().upper().startswith("UPDATE"):
            raise lost_connection()  # the worker cannot reach the database; others may
        return execute(sql, *args)

    wrappers = invoker._db_thread.submit(lambda: connection.execute_wrappers).result()  # that thread's
    wrappers.append(unreachable)

    assert_stopped_and_nothing_recorded(slow_invocation, caplog)
    assert any("lease not renewed before it expired" in record.getMessage() for record in caplog.records)
    failed = [record for record in caplog.records if "lease renewal for" in record.getMessage()]
    assert len(failed) >= 2  # it kept trying until the lease would have run out
    wrappers.remove(unreachable)


def test_a_renewer_rides_out_a_dropped_connection(
    requires_postgresql: None, slow_invocation: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    invoker: Invoker = slow_invocation["invoker"]
    execution = slow_invocation["execution"]
    before = Execution.objects.get(pk=execution.pk).lease_expires_at

    invoker._db_thread.submit(end_this_session).result()

    wait_until(
        lambda: Execution.objects.get(pk=execution.pk).lease_expires_at > before,
        timeout=LEASE_SECONDS * 2,
        message="a renewal on a new connection",
    )
    assert slow_invocation["worker"].is_alive()  # the handler goes on
    assert not killed_sandbox_pids(caplog)


# --- a plain call's claim ---------------------------------------------------------------------


@pytest.fixture
def slow_plain_call() -> Iterator[dict[str, Any]]:
    """Starts a plain call of ``sleep`` seconds in a real sandbox child; the test waits for it."""
    invoker = Invoker("plain-claim-test-worker", SandboxRunner())
    threads: list[threading.Thread] = []

    def call(key: str, sleep: float) -> Operation:
        register("slow-plain", slow_plain, durable=False)
        register("calls-slow-plain", calls_slow_plain)
        execution = start("calls-slow-plain", {"key": key, "sleep": sleep})
        invoker.run_execution(execution.pk)  # the caller runs until it waits on the invoke
        op = Operation.objects.get(execution=execution, type="CHAINED_INVOKE")
        worker = threading.Thread(
            target=invoker.run_plain_invoke, args=(execution.pk, op.operation_id), daemon=True
        )
        worker.start()
        threads.append(worker)
        wait_until(lambda: ledger.count("e2e", "plain-started", key), timeout=60, message="the plain call")
        return op

    with override_settings(DURABLE_LEASE_SECONDS=LEASE_SECONDS):
        try:
            yield {"call": call, "threads": threads}
        finally:
            for worker in threads:
                worker.join(timeout=30)
            invoker.close()
            close_shared_pool()
            ledger.close()


def test_a_plain_call_longer_than_the_lease_keeps_its_claim_and_completes(
    slow_plain_call: dict[str, Any],
) -> None:
    op = slow_plain_call["call"]("renewed", LEASE_SECONDS * 2.5)
    first_expiry = Operation.objects.get(pk=op.pk).invoke_claim_expires_at
    wait_until(
        lambda: Operation.objects.get(pk=op.pk).invoke_claim_expires_at > first_expiry,
        timeout=LEASE_SECONDS * 2,
        message="a renewal of the claim",
    )
    (worker,) = slow_plain_call["threads"]
    worker.join(timeout=30)
    op.refresh_from_db()
    assert (op.status, op.result) == ("SUCCEEDED", '"done"')
    assert services.plain_invoke_recover(op.execution_id, op.operation_id) is False


def test_a_plain_call_whose_claim_was_recovered_is_stopped_and_records_nothing(
    slow_plain_call: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    op = slow_plain_call["call"]("recovered", 60)
    # The scheduler found the claim expired (this worker looked dead) and failed the call.
    Operation.objects.filter(pk=op.pk).update(
        invoke_claim_expires_at=Operation.objects.get(pk=op.pk).started_at
    )
    assert services.plain_invoke_recover(op.execution_id, op.operation_id) is True

    (worker,) = slow_plain_call["threads"]
    wait_until(lambda: not worker.is_alive(), timeout=10, message="the invoker to stop the call")
    (pid,) = killed_sandbox_pids(caplog)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the child calling the target is gone
    op.refresh_from_db()
    assert op.status == "FAILED" and op.error["ErrorType"] == "Runtime.ExitError"
    assert ledger.count("e2e", "plain-finished", "recovered") == 0
    assert any("its claim was lost" in record.getMessage() for record in caplog.records)
