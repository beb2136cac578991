"""The AWS CLI (``awscli`` from requirements-dev.txt) against a live server with ``--endpoint-url``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from executions.api import access_keys
from tests.api_handlers import approval
from tests.api_live import LiveServer, key_environment, live_server
from tests.conftest import SpawnedProcess
from tests.engine_driver import register
from tests.polling import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

AWS = Path(sys.executable).parent / "aws"


@pytest.fixture
def server() -> Iterator[LiveServer]:
    with live_server() as live:
        yield live


@pytest.fixture
def aws(
    server: LiveServer, spawn_process: Callable[..., SpawnedProcess], tmp_path: Path
) -> Callable[..., Any]:
    if not AWS.exists():
        pytest.skip("the AWS CLI is not installed (pip install -r requirements-dev.txt)")
    env = key_environment(server.url, access_keys.key_create(description="aws cli"))
    env.pop("AWS_ENDPOINT_URL_LAMBDA")  # the CLI is told with --endpoint-url, as users do

    def run(*args: str) -> Any:
        process = spawn_process(
            [AWS, "lambda", *args, "--endpoint-url", server.url, "--output", "json"],
            env=env,
            name="aws",
            cwd=tmp_path,
        )
        assert process.wait_exit(timeout=60) == 0, process.log_text()
        text = process.log_text()
        return json.loads(text) if text.strip() else None

    return run


def test_aws_cli_drives_an_execution(aws: Callable[..., Any], tmp_path: Path) -> None:
    register("order-approval", approval)
    names = [f["FunctionName"] for f in aws("list-functions")["Functions"]]
    assert names == ["order-approval"]

    invoked = aws(
        "invoke",
        "--function-name",
        "order-approval",
        "--invocation-type",
        "Event",
        "--durable-execution-name",
        "cli-1",
        "--payload",
        '{"order": 1}',
        str(tmp_path / "out.json"),
    )
    assert invoked["StatusCode"] == 202
    arn = invoked["DurableExecutionArn"]

    def callback_id() -> str | None:
        events = aws("get-durable-execution-history", "--durable-execution-arn", arn)["Events"]
        started = [e for e in events if e["EventType"] == "CallbackStarted"]
        return started[0]["CallbackStartedDetails"]["CallbackId"] if started else None

    callback = wait_until(callback_id, timeout=30, message="the callback to start")
    aws("send-durable-execution-callback-success", "--callback-id", callback, "--result", "approved")

    def finished() -> Any:
        described = aws("get-durable-execution", "--durable-execution-arn", arn)
        return described if described["Status"] != "RUNNING" else None

    described = wait_until(finished, timeout=30, message="the execution to finish")
    assert described["Status"] == "SUCCEEDED"
    assert json.loads(described["Result"]) == {"answer": "approved"}
