"""The sandbox in the processes users run: `durable serve` as after `make run`, and Celery workers.

A hung handler costs its own invocation (the function's Timeout ends it) and a
crashing one costs its own sandbox: the server keeps answering, other
executions complete, and the history records what happened.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from executions.engine.functions import function_register
from executions.models import Execution, HistoryEvent, Invocation, InvocationOutcome
from tests import sandbox_handlers
from tests.conftest import SpawnedProcess
from tests.engine_driver import handler_path
from tests.polling import wait_until
from tests.servers import free_port
from tests.test_cli_embedded import EMBEDDED, cli, ok

FAST_RETRIES = {"DURABLE_INVOCATION_MAX_ATTEMPTS": "2", "DURABLE_INVOCATION_RETRY_DELAY_SECONDS": "0.5"}


def serve(tmp_path: Path, spawn_process: Callable[..., SpawnedProcess]) -> str:
    """`make run`'s steps: migrate, demo setup, serve; plus the misbehaving test handlers."""
    ok(cli(tmp_path, "migrate", "--noinput"))
    ok(cli(tmp_path, "durable", "demo-setup"))
    register = ("durable", "functions", "register")
    ok(cli(tmp_path, *register, "sleeper", handler_path(sandbox_handlers.sleeper), "--timeout-seconds", "2"))
    ok(cli(tmp_path, *register, "crash-once", handler_path(sandbox_handlers.crash_once)))
    port = free_port()
    server = spawn_process(
        [sys.executable, "manage.py", "durable", "serve", "--port", str(port)],
        env={**EMBEDDED, **FAST_RETRIES, "DURABLE_VAR_DIR": str(tmp_path)},
        name="serve",
    )
    url = f"http://127.0.0.1:{port}"
    server.wait_for_log(f"{url}/", timeout=30)
    return url


def healthy(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
        return response.status == 200


def api(var_dir: Path, url: str) -> Any:
    """A boto3 Lambda client on the server, with the key demo-setup wrote (as README's quick
    start): polling through it costs milliseconds, where each CLI call is a Django start-up."""
    key = json.loads((var_dir / "dev-access-key.json").read_text())
    return boto3.client(
        "lambda",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        config=Config(retries={"total_max_attempts": 1}),
    )


def start(client: Any, function: str, payload: Any = None) -> str:
    body = json.dumps(payload if payload is not None else {}).encode()
    response = client.invoke(FunctionName=function, InvocationType="Event", Payload=body)
    return str(response["DurableExecutionArn"])


def invocation_error_types(client: Any, arn: str) -> list[str]:
    events = client.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
    return [
        event["InvocationCompletedDetails"]["Error"]["Payload"]["ErrorType"]
        for event in events
        if event["EventType"] == "InvocationCompleted" and event["InvocationCompletedDetails"].get("Error")
    ]


def ended(client: Any, arn: str, timeout: float = 60) -> dict[str, Any]:
    return wait_until(
        lambda: (e := client.get_durable_execution(DurableExecutionArn=arn))["Status"] != "RUNNING" and e,
        timeout=timeout,
        message=f"{arn} did not end",
    )


@pytest.mark.e2e
def test_embedded_server_outlives_hung_and_crashing_handlers(
    tmp_path: Path, spawn_process: Callable[..., SpawnedProcess]
) -> None:
    url = serve(tmp_path, spawn_process)
    client = api(tmp_path, url)
    marker = tmp_path / "crashed"
    crashing = start(client, "crash-once", {"marker": str(marker)})
    sleepers = [start(client, "sleeper") for _ in range(6)]
    wait_until(marker.exists, timeout=30, message="the crashing handler never ran")
    assert healthy(url)
    began = time.monotonic()
    order = ok(
        cli(
            tmp_path, "durable", "start", "order-processing", "--input", '{"order_id": "o-1"}', "--wait", "10"
        )
    )
    assert json.loads(order)["Status"] == "SUCCEEDED"
    assert time.monotonic() - began < 10
    assert healthy(url)

    execution = ended(client, crashing)  # its sandbox died; the retry ran in a new one
    assert execution["Status"] == "SUCCEEDED"
    assert json.loads(execution["Result"]) == "survived"
    assert invocation_error_types(client, crashing) == ["Runtime.ExitError"]
    for arn in sleepers:
        execution = ended(client, arn)
        assert execution["Status"] == "FAILED"
        assert execution["Error"]["ErrorType"] == "Sandbox.Timedout"
        assert invocation_error_types(client, arn) == ["Sandbox.Timedout", "Sandbox.Timedout"]
    assert healthy(url)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_celery_workers_outlive_hung_handlers(
    requires_postgresql: None, redis_url: str, spawn_process: Callable[..., SpawnedProcess]
) -> None:
    from executions import services

    function_register(name="sleeper", handler=handler_path(sandbox_handlers.sleeper), timeout_seconds=2)
    function_register(name="quick", handler=handler_path(sandbox_handlers.quick))
    manage = [sys.executable, "manage.py", "durable"]
    worker = spawn_process(
        [*manage, "worker", "--pool", "threads", "--concurrency", "4", "--loglevel", "info"],
        env=FAST_RETRIES,
        name="worker",
    )
    spawn_process([*manage, "scheduler"], env=FAST_RETRIES, name="scheduler")
    worker.wait_for_log("ready", timeout=60)

    def start(function: str) -> Execution:
        return services.execution_start(function=function, input_payload="{}").execution

    sleepers = [start("sleeper") for _ in range(6)]
    wait_until(
        lambda: Invocation.objects.filter(ended_at__isnull=True).count() >= 4,
        timeout=30,
        message="the sleepers to take every worker thread",
    )
    quick = start("quick")
    # The sleepers never end by themselves, so any bound proves they block nothing; this
    # one leaves room for replacing killed sandboxes (1 s quiet, 4-5 s on a loaded machine).
    done = wait_until(
        lambda: (e := Execution.objects.get(pk=quick.pk)).is_terminal and e,
        timeout=45,
        message="an unrelated execution waited behind hung handlers",
    )
    assert done.status == "SUCCEEDED"
    for sleeper in sleepers:
        failed = wait_until(
            lambda s=sleeper: (e := Execution.objects.get(pk=s.pk)).is_terminal and e,
            timeout=60,
            message="a sleeper never ended",
        )
        assert failed.status == "FAILED" and failed.error["ErrorType"] == "Sandbox.Timedout"
        outcomes = list(Invocation.objects.filter(execution=failed).values_list("outcome", flat=True))
        assert outcomes == [InvocationOutcome.TIMEOUT] * 2
        events = HistoryEvent.objects.filter(execution=failed, event_type="InvocationCompleted")
        assert [e.details["Error"]["Payload"]["ErrorType"] for e in events] == ["Sandbox.Timedout"] * 2
