"""A handler in another process, checkpointing over HTTP with the SDK's own LambdaClient.

The function is registered with an ``http://`` handler (``executions.workers.remote``):
the engine's worker POSTs the Lambda JSON event to
``python -m executions.workers.remote_runtime``, whose SDK talks back to the API
through ``AWS_ENDPOINT_URL_LAMBDA``, signed with an issued access key.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from executions.api import access_keys
from executions.engine.functions import function_register
from executions.models import Execution, HistoryEvent
from tests.api_live import LiveServer, key_environment, live_server
from tests.conftest import SpawnedProcess
from tests.polling import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server() -> Iterator[LiveServer]:
    with live_server() as live:
        yield live


def start_remote_runtime(spawn_process: Callable[..., SpawnedProcess], env: dict[str, str]) -> str:
    runtime = spawn_process(
        [
            sys.executable,
            "-m",
            "executions.workers.remote_runtime",
            "tests.api_remote_handler:handler",
            "--port",
            "0",
        ],
        env=env,
        name="remote-runtime",
    )
    runtime.wait_for_log("serving", timeout=20)
    return re.search(r"on (http://\S+)", runtime.log_text()).group(1)


def test_remote_handler_checkpoints_over_http(
    server: LiveServer, spawn_process: Callable[..., SpawnedProcess]
) -> None:
    key = access_keys.key_create(description="remote handler")
    url = start_remote_runtime(spawn_process, key_environment(server.url, key))
    function_register(name="remote-sum", handler=url)
    client = server.client(key)

    arn = client.invoke(FunctionName="remote-sum", InvocationType="Event", Payload=b'{"numbers": [1, 2, 3]}')[
        "DurableExecutionArn"
    ]

    def callback_id() -> Any:
        events = client.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
        return next(
            (
                e["CallbackStartedDetails"]["CallbackId"]
                for e in events
                if e["EventType"] == "CallbackStarted"
            ),
            None,
        )

    client.send_durable_execution_callback_success(
        CallbackId=wait_until(callback_id, timeout=30, message="the remote handler's callback"),
        Result=b"yes",
    )
    described = wait_until(
        lambda: (d := client.get_durable_execution(DurableExecutionArn=arn))["Status"] != "RUNNING" and d,
        timeout=30,
        message="the execution to end",
    )
    assert described["Status"] == "SUCCEEDED", described.get("Error")
    result = json.loads(described["Result"])
    assert result["total"] == 6 and result["confirmed"] == "yes"
    assert result["ran_in"] != os.getpid()  # the step ran in the other process
    execution = Execution.objects.get(arn=arn)
    assert execution.invocation_count >= 3  # first run, after the wait, after the callback
    assert HistoryEvent.objects.filter(execution=execution, event_type="WaitSucceeded").exists()
