"""The SDK testing library's cloud runner against a live server: the whole conformance catalogue.

``DurableFunctionCloudTestRunner`` drives each case over the Lambda API (Invoke,
GetDurableExecution, paged GetDurableExecutionHistory, SendDurableExecutionCallback*)
and rebuilds the outcome from the history; it must equal what the reference
runner (``DurableFunctionTestRunner``) produced for the same handler.

Time: the reference skips durable timers (waits, retry backoffs) and keeps
callback timeouts and the execution timeout in real time. ``SkippingClock``
does the same to the live server's engine clock: whenever no invocation is
running or due, it jumps to the next wait or retry, unless a callback or
execution deadline comes first. Request signatures keep the real clock.
"""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from aws_durable_execution_sdk_python.lambda_service import ErrorObject
from aws_durable_execution_sdk_python_testing.runner import (
    DurableFunctionCloudTestRunner,
)
from django.db import connections
from django.db.models import Min, Q
from django.test import override_settings

from durable_console.bootstrap import register_demo_functions
from examples import ledger
from examples.registry import DEMO_FUNCTIONS
from executions.api import access_keys
from executions.engine import clock
from executions.models import Execution, ExecutionStatus, Operation
from tests.api_live import LiveServer, key_environment, live_server
from tests.catalogue.cases import (
    CASES,
    CallbackFail,
    CallbackHeartbeat,
    CallbackSucceed,
    Case,
    PauseExecution,
    ResumeExecution,
    StopExecution,
)
from tests.catalogue.normalize import Outcome, normalize_operations
from tests.engine_driver import register
from tests.in_process_runner import InProcessRunner
from tests.test_conformance import reference_outcome

pytestmark = pytest.mark.django_db(transaction=True)

ACTIVE = (ExecutionStatus.RUNNING, ExecutionStatus.PAUSED)
CALLBACK_WAIT_SECONDS = 30


class SkippingClock:
    """The engine's clock: real time plus an offset that grows over idle waits."""

    def __init__(self) -> None:
        self.offset = datetime.timedelta()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="skipping-clock")

    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC) + self.offset

    def __enter__(self) -> SkippingClock:
        clock.set_clock(self.now)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        clock.set_clock(None)

    def _run(self) -> None:
        try:
            while not self._stop.wait(0.01):
                if target := self._skip_target(self.now()):
                    self.offset += target - self.now()
        finally:
            connections.close_all()

    @staticmethod
    def _skip_target(now: datetime.datetime) -> datetime.datetime | None:
        active = Execution.objects.filter(status__in=ACTIVE)
        busy = (
            active.filter(
                Q(lease_owner__gt="") | Q(needs_invocation=True, invocation_due_at__lte=now)
            ).exists()
            or Operation.objects.filter(invoke_dispatch_pending=True).exists()
        )
        if busy:
            return None
        ops = Operation.objects.filter(execution__status__in=ACTIVE, timer_at__isnull=False)
        skippable = [
            ops.filter(type__in=("WAIT", "STEP")).aggregate(t=Min("timer_at"))["t"],
            active.filter(needs_invocation=True).aggregate(t=Min("invocation_due_at"))["t"],
        ]
        real_time = [
            ops.filter(type="CALLBACK").aggregate(t=Min("timer_at"))["t"],
            active.aggregate(t=Min("timeout_at"))["t"],
        ]
        target = min((t for t in skippable if t), default=None)
        deadline = min((t for t in real_time if t), default=None)
        if target is None or target <= now or (deadline is not None and deadline <= target):
            return None
        return target


@pytest.fixture
def server() -> Iterator[LiveServer]:
    # Leases and retry backoffs are engine time, which jumps; keep them out of the way.
    runner = InProcessRunner()
    with (
        override_settings(DURABLE_LEASE_SECONDS=3600, DURABLE_INVOCATION_RETRY_DELAY_SECONDS=0.05),
        live_server(workers=3, scheduler_interval=0.02, runner=runner) as live,
        SkippingClock(),
    ):
        yield live
    runner.close()


@pytest.fixture
def aws_env(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cloud runner builds its own boto3 client: credentials come from the environment."""
    key = access_keys.key_create(description="cloud runner")
    for name, value in key_environment(server.url, key).items():
        monkeypatch.setenv(name, value)
    # boto3's default session caches the credentials it first resolved.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


def cloud_runner(server: LiveServer, function_name: str) -> DurableFunctionCloudTestRunner:
    with _client_lock:
        return DurableFunctionCloudTestRunner(
            function_name=function_name,
            region="us-east-1",
            lambda_endpoint=server.url,
            poll_interval=0.05,
        )


def register_case(case: Case) -> None:
    for name, target in case.durable_targets.items():
        register(name, target)
    for name, target in case.plain_targets.items():
        register(name, target, durable=False)
    register(case.name, case.handler, timeout=case.execution_timeout)


def start(runner: DurableFunctionCloudTestRunner, case: Case) -> str:
    if case.input is not None:
        # run_async JSON-encodes its input: hand it the decoded document.
        return runner.run_async(input=json.loads(case.input))
    # Without input the reference sends no payload (the handler gets {}); run_async
    # would send "null". Start through the runner's own client with an empty payload.
    response = runner.lambda_client.invoke(
        FunctionName=runner.function_name, InvocationType="Event", Payload=b""
    )
    return response["DurableExecutionArn"]


def perform(runner: DurableFunctionCloudTestRunner, arn: str, action: Any) -> None:
    client = runner.lambda_client
    match action:
        case CallbackSucceed(name=name, result=result):
            runner.send_callback_success(_callback(runner, arn, name), result.encode())
        case CallbackFail(name=name, error_type=error_type, error_message=message):
            error = ErrorObject(message=message, type=error_type, data=None, stack_trace=None)
            runner.send_callback_failure(_callback(runner, arn, name), error)
        case CallbackHeartbeat(name=name):
            runner.send_callback_heartbeat(_callback(runner, arn, name))
        case StopExecution(when_callback=name):
            _callback(runner, arn, name)
            client.stop_durable_execution(DurableExecutionArn=arn)
        case PauseExecution(when_callback=name):
            _callback(runner, arn, name)
            client.pause_durable_execution(DurableExecutionArn=arn)
        case ResumeExecution():
            client.resume_durable_execution(DurableExecutionArn=arn)
        case _:
            raise TypeError(f"unknown action {action!r}")


def _callback(runner: DurableFunctionCloudTestRunner, arn: str, name: str) -> str:
    return runner.wait_for_callback(arn, name=name, timeout=CALLBACK_WAIT_SECONDS)


def _wire(op: Any) -> dict[str, Any]:
    return {
        "Id": op.operation_id,
        "ParentId": op.parent_id,
        "Type": op.operation_type.value,
        "SubType": op.sub_type,
        "Name": op.name,
        "Status": op.status.value,
    }


def run_over_api(server: LiveServer, case: Case) -> Outcome:
    register_case(case)
    runner = cloud_runner(server, case.name)
    arn = start(runner, case)
    for action in case.actions:
        perform(runner, arn, action)
    result = runner.wait_for_result(arn, timeout=case.execution_timeout + 30)
    described = runner.lambda_client.get_durable_execution(DurableExecutionArn=arn)
    return Outcome(
        status=described["Status"],
        result=result.result,
        error_type=(described.get("Error") or {}).get("ErrorType"),
        operations=normalize_operations(_wire(op) for op in result.get_all_operations()),
    )


# The runner rebuilds operations from history with ``events_to_operations``, which
# does not know ExecutionPaused/ExecutionResumed and then reports no operations at
# all (docs/api.md, Operations); for such cases only status and result are compared.
HISTORY_WITHOUT_OPERATIONS = frozenset({"pause-resume-callback"})


# Cases run this many at a time (the server has as many workers): each case has
# functions of its own, and its actions are sent in order by its own thread.
PARALLEL_CASES = 3
_client_lock = threading.Lock()  # boto3's default session builds clients one thread at a time


def compare_over_api(server: LiveServer, case: Case) -> str | None:
    """The case run over the API against the reference: None if they agree, else both outcomes."""
    try:
        mine, reference = run_over_api(server, case), reference_outcome(case.name)
    finally:
        connections.close_all()  # this pool thread's connections
    same = (mine.status, mine.result, mine.error_type) == (
        reference.status,
        reference.result,
        reference.error_type,
    )
    if case.name not in HISTORY_WITHOUT_OPERATIONS:
        same = same and mine.operations == reference.operations
    return None if same else f"{case.name}:\n  api:       {mine}\n  reference: {reference}"


@pytest.mark.usefixtures("aws_env")
def test_catalogue_through_the_cloud_runner(server: LiveServer) -> None:
    with ThreadPoolExecutor(PARALLEL_CASES, thread_name_prefix="case") as pool:
        outcomes = list(pool.map(lambda case: compare_over_api(server, case), CASES))
    mismatches = [mismatch for mismatch in outcomes if mismatch]
    assert not mismatches, "\n".join(mismatches)


DEMOS = (
    "order-processing",
    "distributed-transaction",
    "function-chaining",
    "data-pipeline",
    "booking",
    "batch-processing",
)


def reference_demo(name: str) -> tuple[str, dict[str, Any]]:
    from tests.test_examples_reference import runner_for

    with runner_for(next(d for d in DEMO_FUNCTIONS if d.name == name).load()) as runner:
        result = runner.run(input="{}", execution_timeout=60)
    return result.status.value, json.loads(result.result)


@pytest.mark.usefixtures("aws_env")
def test_demo_functions_through_the_cloud_runner(server: LiveServer) -> None:
    """Synchronous ``run`` (RequestResponse Invoke waits for the execution) on the demos.

    Demo results carry generated ids, so the comparison with the reference is
    on status, the result's fields and its own ``status`` field.
    """
    register_demo_functions()
    try:
        for name in DEMOS:
            result = cloud_runner(server, name).run(input={}, timeout=60)
            mine = json.loads(result.result)
            status, reference = reference_demo(name)
            assert result.status.value == status == "SUCCEEDED", name
            assert mine.keys() == reference.keys(), name
            assert mine.get("status") == reference.get("status"), name
            assert result.get_all_operations(), name
    finally:
        ledger.close()
