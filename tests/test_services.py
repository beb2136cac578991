"""Service-level rules of the engine that the conformance catalogue does not pin down."""

from __future__ import annotations

import base64
import datetime
import json
import re
from typing import Any

import pytest
from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CallbackConfig, Duration, InvokeConfig
from django.db import connection
from django.test import override_settings

from executions import services
from executions.engine import checkpoint as checkpoint_service
from executions.engine.errors import (
    CallbackTimeout,
    DurableExecutionAlreadyStarted,
    InvalidParameterValue,
    ResourceConflict,
    ResourceNotFound,
)
from executions.engine.functions import function_register
from executions.models import Execution, HistoryEvent, Invocation, Operation
from executions.queries import selectors
from executions.workers import scheduler
from tests.engine_driver import (
    callback_id,
    engine_driver,
    handler_path,
    refreshed,
    register,
    register_unchecked,
    start,
    started_callback,
    wire_operations,
)

pytestmark = pytest.mark.django_db(transaction=True)


@durable_execution
def echo(event: Any, context: DurableContext) -> Any:
    return context.step(lambda _: event, name="echo")


@durable_execution
def echo_v2(event: Any, context: DurableContext) -> Any:
    return {"v2": context.step(lambda _: event, name="echo")}


@durable_execution
def approval(event: Any, context: DurableContext) -> str:
    callback = context.create_callback(
        name="decision",
        config=CallbackConfig(timeout=Duration.from_hours(1), heartbeat_timeout=Duration.from_minutes(5)),
    )
    return callback.result()


def crashing(event: Any, context: Any) -> None:
    """Raises before the SDK can turn it into a FAILED output, like a Lambda runtime crash."""
    raise RuntimeError("runtime crashed")


@durable_execution
def napping(event: Any, context: DurableContext) -> str:
    context.wait(Duration.from_seconds(30), name="nap")
    return "rested"


def test_same_name_and_input_returns_the_same_execution() -> None:
    register("echo", echo)
    first = services.execution_start(function="echo", input_payload='{"a": 1}', name="order-7")
    again = services.execution_start(function="echo", input_payload='{"a": 1}', name="order-7")
    assert first.created and not again.created
    assert first.execution.pk == again.execution.pk
    with pytest.raises(DurableExecutionAlreadyStarted):
        services.execution_start(function="echo", input_payload='{"a": 2}', name="order-7")
    assert Execution.objects.count() == 1


@pytest.mark.parametrize(
    ("function", "payload", "name", "error"),
    [
        ("nope", "{}", None, ResourceNotFound),
        ("echo", "{not json", None, InvalidParameterValue),
        ("echo", "{}", "bad name!", InvalidParameterValue),
        ("arn:aws:lambda:eu-west-1:123456789012:function:echo", "{}", None, ResourceNotFound),
        ("echo:7", "{}", None, ResourceNotFound),
    ],
)
def test_bad_starts_are_refused_and_create_nothing(
    function: str, payload: str, name: str | None, error: type[Exception]
) -> None:
    register("echo", echo)
    with pytest.raises(error):
        services.execution_start(function=function, input_payload=payload, name=name)
    assert Execution.objects.count() == 0


def test_arn_has_the_lambda_format_and_the_execution_op_id() -> None:
    register("echo", echo)
    execution = services.execution_start(function="echo", input_payload="{}", name="named-1").execution
    pattern = (
        r"^arn:aws:lambda:us-east-1:123456789012:function:echo:\$LATEST"
        r"/durable-execution/named-1/[a-zA-Z0-9_-]+$"
    )
    assert re.match(pattern, execution.arn)
    op = Operation.objects.get(execution=execution, type="EXECUTION")
    assert op.operation_id == execution.arn.split("/")[-1]
    assert op.input_payload == "{}"


def test_disabled_function_refuses_new_executions() -> None:
    function_register(name="echo", handler=handler_path(echo), enabled=False)
    with pytest.raises(InvalidParameterValue, match="disabled"):
        start("echo", {})


def test_running_execution_keeps_its_pinned_handler_version() -> None:
    register("echo", echo)
    with engine_driver() as driver:
        execution = start("echo", {"x": 1})
        register("echo", echo_v2)  # a new version while nothing has run yet
        driver.run_until(lambda: refreshed(execution).is_terminal)
        newer = start("echo", {"x": 2})
        driver.run_until(lambda: refreshed(newer).is_terminal)
    assert (refreshed(execution).function_version, refreshed(execution).result) == (1, '{"x": 1}')
    assert (refreshed(newer).function_version, json.loads(refreshed(newer).result)) == (2, {"v2": {"x": 2}})


def test_callback_ids_are_256_bit_standard_base64_and_never_stored() -> None:
    register("approval", approval)
    with engine_driver() as driver:
        execution = start("approval", {})
        driver.run_until(lambda: started_callback(execution, "decision") is not None)
        op = started_callback(execution, "decision")
        assert op is not None
        cid = callback_id(op)
    assert re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", cid)
    assert len(base64.b64decode(cid)) == 32
    with connection.cursor() as cursor:
        for table in ("executions_operation", "executions_historyevent", "executions_execution"):
            cursor.execute(f"SELECT * FROM {table}")  # fixed table names, not input
            assert cid not in repr(cursor.fetchall()), table


def test_callback_completion_is_single_use() -> None:
    register("approval", approval)
    with engine_driver() as driver:
        execution = start("approval", {})
        driver.run_until(lambda: started_callback(execution, "decision") is not None)
        cid = callback_id(started_callback(execution, "decision"))
        services.callback_succeed(cid, b'"yes"')
        with pytest.raises(CallbackTimeout):
            services.callback_succeed(cid, b'"again"')
        with pytest.raises(CallbackTimeout):
            services.callback_fail(cid, {"ErrorMessage": "late"})
        with pytest.raises(ResourceNotFound):
            services.callback_succeed(base64.b64encode(b"x" * 32).decode(), b"1")
        driver.run_until(lambda: refreshed(execution).is_terminal)
    assert json.loads(refreshed(execution).result) == '"yes"'  # the raw callback result, returned
    assert HistoryEvent.objects.filter(execution=execution, event_type="CallbackSucceeded").count() == 1


def test_a_callback_completed_by_its_operation_is_single_use_too() -> None:
    """The console's and approvals' form: the operation they hold, re-read under the lock."""
    register("approval", approval)
    with engine_driver() as driver:
        execution = start("approval", {})
        driver.run_until(lambda: started_callback(execution, "decision") is not None)
        held = started_callback(execution, "decision")
        assert held is not None
        stale = Operation(execution_id=held.execution_id, operation_id=held.operation_id)
        stale.callback_id_hash = "another callback"
        with pytest.raises(ResourceNotFound):  # no longer the callback the caller saw
            services.callback_succeed_operation(stale, b'"no"')
        services.callback_fail_operation(held, {"ErrorMessage": "declined"})
        with pytest.raises(CallbackTimeout):
            services.callback_succeed_operation(held, b'"again"')
        driver.run_until(lambda: refreshed(execution).is_terminal)
    assert HistoryEvent.objects.filter(execution=execution, event_type="CallbackFailed").count() == 1
    assert not HistoryEvent.objects.filter(execution=execution, event_type="CallbackSucceeded").exists()


@pytest.mark.parametrize("result", [None, "", b""], ids=["absent", "empty-str", "empty-bytes"])
def test_callback_success_without_a_result_gives_the_handler_none(result: str | bytes | None) -> None:
    """An empty or absent Result is no result: ``callback.result()`` is None, not ""."""
    register("approval", approval)
    with engine_driver() as driver:
        execution = start("approval", {})
        driver.run_until(lambda: started_callback(execution, "decision") is not None)
        services.callback_succeed(callback_id(started_callback(execution, "decision")), result)
        driver.run_until(lambda: refreshed(execution).is_terminal)
    execution = refreshed(execution)
    assert (execution.status, json.loads(execution.result)) == ("SUCCEEDED", None)
    (callback,) = [op for op in wire_operations(execution) if op["Type"] == "CALLBACK"]
    assert callback["Status"] == "SUCCEEDED"
    assert "Result" not in callback["CallbackDetails"]
    events = selectors.execution_history(execution, max_items=1000)["Events"]
    (succeeded,) = [e for e in events if e["EventType"] == "CallbackSucceeded"]
    assert succeeded["CallbackSucceededDetails"] == {"Result": {"Truncated": False}}


def test_heartbeat_keeps_a_callback_alive_past_its_heartbeat_timeout() -> None:
    register("approval", approval, timeout=7200)
    with engine_driver() as driver:
        execution = start("approval", {})
        driver.run_until(lambda: started_callback(execution, "decision") is not None)
        cid = callback_id(started_callback(execution, "decision"))
        for _ in range(3):  # 12 minutes in all, beyond the 5-minute heartbeat timeout
            driver.clock.advance(240)
            driver.settle()
            services.callback_heartbeat(cid)
        assert started_callback(execution, "decision") is not None
        driver.clock.advance(301)
        driver.settle()
        driver.run_until(lambda: refreshed(execution).is_terminal)
    op = Operation.objects.get(execution=execution, type="CALLBACK")
    assert (op.status, op.error["ErrorType"]) == ("TIMED_OUT", "Callback.Heartbeat")
    with pytest.raises(CallbackTimeout):
        services.callback_heartbeat(cid)


def test_raised_invocations_are_retried_then_the_execution_fails() -> None:
    register_unchecked("crashing", crashing)
    with engine_driver() as driver:
        execution = start("crashing", {})
        driver.run_until(lambda: refreshed(execution).is_terminal)
    execution = refreshed(execution)
    assert execution.status == "FAILED"
    assert execution.error["ErrorType"] == "RuntimeError"
    outcomes = list(Invocation.objects.filter(execution=execution).values_list("outcome", flat=True))
    assert outcomes == ["ERROR"] * 5
    events = HistoryEvent.objects.filter(execution=execution, event_type="InvocationCompleted")
    assert events.count() == 5


def test_expired_lease_is_taken_over_and_the_zombie_is_fenced() -> None:
    register("napping", napping)
    with engine_driver() as driver:
        execution = start("napping", {})
        zombie = services.invocation_begin(execution.pk, worker="zombie")
        assert zombie is not None
        assert services.invocation_begin(execution.pk, worker="other") is None  # lease held
        driver.clock.advance(31)  # longer than the 30 s lease
        scheduler.tick()
        driver.run_until(lambda: refreshed(execution).is_terminal)
        with pytest.raises(InvalidParameterValue, match=r"^Invalid checkpoint token"):
            checkpoint_service.checkpoint(execution.arn, zombie.token, [])
        services.invocation_finish(execution.pk, zombie.invocation, output={"Status": "PENDING"})
    execution = refreshed(execution)
    assert (execution.status, execution.result) == ("SUCCEEDED", '"rested"')
    lost = Invocation.objects.get(execution=execution, number=zombie.invocation)
    assert lost.outcome in {"LOST", "PENDING"}


def test_pending_with_nothing_to_wait_for_fails_after_three_tries() -> None:
    register("echo", echo)
    execution = start("echo", {})
    for _ in range(3):
        invocation = services.invocation_begin(execution.pk, worker="w")
        assert invocation is not None
        services.invocation_finish(execution.pk, invocation.invocation, output={"Status": "PENDING"})
    execution = refreshed(execution)
    assert execution.status == "FAILED"
    assert "PENDING" in execution.error["ErrorMessage"]


def test_invalid_output_fails_the_execution() -> None:
    register("echo", echo)
    execution = start("echo", {})
    invocation = services.invocation_begin(execution.pk, worker="w")
    services.invocation_finish(execution.pk, invocation.invocation, output={"Status": "MAYBE"})
    assert refreshed(execution).error["ErrorType"] == "InvalidParameterValueException"


def test_pause_holds_invocations_and_resume_releases_them() -> None:
    register("napping", napping)
    with engine_driver() as driver:
        execution = start("napping", {})
        driver.settle()
        services.execution_pause(execution.arn)
        driver.clock.advance(60)
        driver.settle()
        # The wait completed while paused, but the handler was not invoked.
        assert Operation.objects.get(execution=execution, type="WAIT").status == "SUCCEEDED"
        assert refreshed(execution).status == "PAUSED"
        assert Invocation.objects.filter(execution=execution).count() == 1
        services.execution_resume(execution.arn)
        driver.run_until(lambda: refreshed(execution).is_terminal)
    assert refreshed(execution).result == '"rested"'
    types = list(HistoryEvent.objects.filter(execution=execution).values_list("event_type", flat=True))
    assert types.index("ExecutionPaused") < types.index("WaitSucceeded") < types.index("ExecutionResumed")


@pytest.mark.parametrize("timeout_paused", [True, False])
def test_a_pause_holding_the_timeout_outlasts_the_deadline(timeout_paused: bool) -> None:
    register("napping", napping, timeout=100)
    with engine_driver() as driver:
        execution = start("napping", {})
        driver.settle()
        driver.clock.advance(40)  # 60 s of the timeout left
        services.execution_pause(execution.arn, timeout_paused=timeout_paused)
        driver.clock.advance(500)  # far past the original deadline
        driver.settle()
        if not timeout_paused:  # the clock ran on through the pause
            assert refreshed(execution).status == "TIMED_OUT"
            return
        paused = refreshed(execution)
        assert paused.status == "PAUSED" and paused.timeout_at is None
        described = selectors.execution_describe(paused)
        assert described["PauseDetails"]["ExecutionTimeoutPaused"] is True
        assert "ExpectedExecutionTimeoutTimestamp" not in described and "HeldTimeoutSeconds" not in str(
            described
        )

        services.execution_resume(execution.arn)
        resumed = refreshed(execution)
        assert resumed.timeout_at == driver.clock.now() + datetime.timedelta(seconds=60)  # what was left
        driver.run_until(lambda: refreshed(execution).is_terminal)
    assert refreshed(execution).status == "SUCCEEDED" and refreshed(execution).result == '"rested"'


def test_checkpoint_while_paused_is_applied_but_revokes_the_token() -> None:
    register("napping", napping)
    execution = start("napping", {})
    invocation = services.invocation_begin(execution.pk, worker="w")
    services.execution_pause(execution.arn)
    response = checkpoint_service.checkpoint(
        execution.arn,
        invocation.token,
        [
            {
                "Id": "w1",
                "Type": "WAIT",
                "Action": "START",
                "Name": "nap",
                "SubType": "Wait",
                "WaitOptions": {"WaitSeconds": 30},
            }
        ],
    )
    assert "CheckpointToken" not in response
    assert response["NewExecutionState"]["Operations"][0]["Status"] == "STARTED"


def test_stop_is_idempotent_and_delete_needs_a_terminal_execution() -> None:
    register("napping", napping)
    execution = start("napping", {})
    with pytest.raises(ResourceConflict):
        services.execution_delete(execution.arn)
    stopped_at = services.execution_stop(execution.arn, {"ErrorMessage": "operator said so"})
    assert services.execution_stop(execution.arn) == stopped_at
    assert refreshed(execution).error == {"ErrorMessage": "operator said so"}
    with pytest.raises(ResourceConflict):
        services.execution_pause(execution.arn)
    services.execution_delete(execution.arn)
    assert not Execution.objects.filter(pk=execution.pk).exists()
    assert not Operation.objects.filter(execution_id=execution.pk).exists()


def test_execution_timeout_closes_a_waiting_execution() -> None:
    function_register(name="napping", handler=handler_path(napping), execution_timeout=10)
    with engine_driver() as driver:
        execution = start("napping", {})
        driver.run_until(lambda: refreshed(execution).is_terminal)
    execution = refreshed(execution)
    assert execution.status == "TIMED_OUT"
    assert execution.error == {"ErrorMessage": "Execution timed out after 10 seconds."}


def test_scheduler_fires_a_due_wait_and_dispatches_once() -> None:
    register("napping", napping)
    with engine_driver() as driver:
        execution = start("napping", {})
        driver.settle()
        assert refreshed(execution).wake_at is not None
        driver.clock.advance(30)
        assert scheduler.tick() == 1  # the timer fired; its commit hinted the worker
        assert driver.sink.items.count(("wake", execution.pk)) == 1
        assert scheduler.tick() == 0  # dispatched recently: not sent again
        driver.settle()
    assert refreshed(execution).status == "SUCCEEDED"


def test_state_pages_follow_start_order() -> None:
    register("echo", echo)
    execution = start("echo", {})
    invocation = services.invocation_begin(execution.pk, worker="w")
    token = invocation.token
    updates = [
        {
            "Id": f"s{i}",
            "Type": "STEP",
            "Action": "SUCCEED",
            "Name": f"s{i}",
            "SubType": "Step",
            "Payload": str(i),
        }
        for i in range(5)
    ]
    token = checkpoint_service.checkpoint(execution.arn, token, updates)["CheckpointToken"]
    with override_settings(DURABLE_STATE_PAGE_SIZE=2):
        seen, marker = [], None
        while True:
            page = checkpoint_service.get_state(execution.arn, token, marker, 1000)
            seen += [op["Id"] for op in page["Operations"]]
            if not (marker := page.get("NextMarker")):
                break
    assert seen == [execution.invocation_id, "s0", "s1", "s2", "s3", "s4"]


def test_timestamps_in_the_invocation_input_are_datetimes() -> None:
    register("echo", echo)
    execution = start("echo", {})
    invocation = services.invocation_begin(execution.pk, worker="w")
    (op,) = invocation.operations
    assert isinstance(op["StartTimestamp"], datetime.datetime)
    assert op["StartTimestamp"].tzinfo is not None


def test_terminal_executions_past_retention_are_purged() -> None:
    function_register(name="echo", handler=handler_path(echo))
    with engine_driver() as driver:
        old = start("echo", {"n": 1})
        driver.run_until(lambda: refreshed(old).is_terminal)
        recent = start("echo", {"n": 2})
        driver.run_until(lambda: refreshed(recent).is_terminal)
        Execution.objects.filter(pk=old.pk).update(ended_at=driver.clock.now() - datetime.timedelta(days=15))
        assert services.executions_purge_expired(driver.clock.now()) == 1
    assert list(Execution.objects.values_list("pk", flat=True)) == [recent.pk]


@durable_execution
def tenant_child(event: Any, context: DurableContext) -> Any:
    return context.step(lambda _: event, name="echo")


@durable_execution
def tenant_caller(event: Any, context: DurableContext) -> Any:
    config = InvokeConfig[Any, Any](tenant_id=event["tenant"]) if event.get("tenant") else None
    try:
        return context.invoke(event["target"], {"n": 1}, name="call", config=config)
    except Exception as exc:  # an unresolvable target is an outcome here, not a crash
        return {"failed": type(exc).__name__}


@pytest.mark.parametrize(
    ("target", "tenant"),
    [("tenant-child", "acme-1"), ("tenant-child", None), ("no-such-function", "acme-1")],
    ids=["durable-with-tenant", "durable-without-tenant", "unresolvable-with-tenant"],
)
def test_chained_invoke_started_event_names_the_invokes_tenant(target: str, tenant: str | None) -> None:
    register("tenant-child", tenant_child)
    register("tenant-caller", tenant_caller)
    with engine_driver() as driver:
        execution = start("tenant-caller", {"target": target, "tenant": tenant})
        driver.run_until(lambda: refreshed(execution).is_terminal)
    events = selectors.execution_history(refreshed(execution), max_items=1000)["Events"]
    (started,) = [e for e in events if e["EventType"] == "ChainedInvokeStarted"]
    details = started["ChainedInvokeStartedDetails"]
    assert details["FunctionName"] == target
    if tenant is None:
        assert "TenantId" not in details
    else:
        assert details["TenantId"] == tenant
    child = Execution.objects.filter(parent=execution).first()
    if target == "tenant-child":
        assert child is not None and child.tenant_id == (tenant or "")
        assert details["DurableExecutionArn"] == child.arn
    else:
        assert child is None
