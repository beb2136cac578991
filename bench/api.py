"""Lambda-compatible API benchmarks on a throwaway PostgreSQL (fsync on).

    .venv/bin/python -m bench.api [--checkpoints 300] [--callbacks 30]

1. Checkpoint latency: the SDK's own service clients, one checkpoint (a step's
   START + SUCCEED) at a time, on a claimed invocation:
   - in-process: ``executions.workers.client.DatabaseServiceClient`` (what workers use);
   - HTTP: the SDK's ``LambdaClient`` (boto3, SigV4) against ``durable serve``
     running in its own process (uvicorn, web only).
2. Callback-to-resume: ``durable serve`` with its embedded workers and
   scheduler; a handler waits on a callback, the bench sends
   SendDurableExecutionCallbackSuccess over HTTP, and the handler's next step
   records when it ran. Latency = that moment minus the moment the request left.

Prints a JSON report; the README quotes it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoints", type=int, default=300)
    parser.add_argument("--callbacks", type=int, default=30)
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from tests.servers import start_postgres

    with start_postgres(fsync=True, settings={"shared_buffers": "256MB"}) as pg:
        os.environ.update(
            DATABASE_URL=pg.url,
            DJANGO_SETTINGS_MODULE="durable_console.settings",
            DURABLE_VAR_DIR=str(Path(pg.data_dir).parent / "var"),
            DURABLE_HANDLER_MODULES="bench",  # the benchmark's handlers: bench.handlers
        )
        for name in ("CELERY_BROKER_URL", "REDIS_URL"):  # embedded mode
            os.environ.pop(name, None)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from executions.api import access_keys
        from executions.engine.functions import function_register

        function_register(name="bench-steps", handler="bench.handlers:steps")
        function_register(name="bench-callbacks", handler="bench.handlers:callbacks")
        key = access_keys.key_create(description="bench")
        report: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}}
        with serve(embedded=False) as url:
            report["checkpoint"] = checkpoint_latency(url, key, args.checkpoints)
        with serve(embedded=True) as url:
            report["callback_to_resume"] = callback_to_resume(url, key, args.callbacks)
    print(json.dumps(report, indent=2))


@contextmanager
def serve(*, embedded: bool) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [sys.executable, str(REPO / "manage.py"), "durable", "serve", "--port", str(port)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        argv + ([] if embedded else ["--no-embedded"]),
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"server on port {port} did not start")


def _boto(url: str, key: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "lambda",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key.access_key_id,
        aws_secret_access_key=key.secret_access_key,
        config=Config(retries={"max_attempts": 1}),
    )


# --- 1. checkpoint latency ---------------------------------------------------------------------


def checkpoint_latency(url: str, key: Any, count: int) -> dict[str, Any]:
    from aws_durable_execution_sdk_python.lambda_service import LambdaClient

    from executions.workers.client import DatabaseServiceClient
    from executions.workers.shared_connection import SharedConnection

    shared = SharedConnection()
    clients = {
        "in_process": DatabaseServiceClient(shared),
        "http": LambdaClient(client=_boto(url, key)),
    }
    report = {name: _time_checkpoints(client, count) for name, client in clients.items()}
    shared.close()
    report["http_overhead_ms_p50"] = report["http"]["p50_ms"] - report["in_process"]["p50_ms"]
    return report


def _time_checkpoints(client: Any, count: int) -> dict[str, float]:
    from aws_durable_execution_sdk_python.lambda_service import OperationUpdate

    from executions import services
    from executions.models import Execution

    arn = services.execution_start(function="bench-steps", input_payload="{}").execution.arn
    invocation = services.invocation_begin(Execution.objects.get(arn=arn).pk, worker="bench")
    token, samples = invocation.token, []
    for index in range(count + 10):
        op_id = f"step-{index}"
        updates = [
            OperationUpdate.create_step_start(_identifier(op_id)),
            OperationUpdate.create_step_succeed(_identifier(op_id), json.dumps(index)),
        ]
        began = time.perf_counter()
        token = client.checkpoint(arn, token, updates, None).checkpoint_token
        if index >= 10:  # warm-up
            samples.append(time.perf_counter() - began)
    return _summary(samples)


def _identifier(op_id: str) -> Any:
    from aws_durable_execution_sdk_python.identifier import OperationIdentifier
    from aws_durable_execution_sdk_python.lambda_service import OperationSubType, OperationType

    return OperationIdentifier(op_id, OperationSubType.STEP, None, op_id, operation_type=OperationType.STEP)


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "samples": len(ordered),
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
    }


# --- 2. callback to resume ------------------------------------------------------------------------


def callback_to_resume(url: str, key: Any, count: int) -> dict[str, Any]:
    client = _boto(url, key)
    arn = client.invoke(
        FunctionName="bench-callbacks", InvocationType="Event", Payload=json.dumps({"count": count})
    )["DurableExecutionArn"]
    samples = []
    for index in range(count):
        callback_id = _pending_callback(client, arn, f"cb-{index}")
        sent = time.time()
        client.send_durable_execution_callback_success(CallbackId=callback_id, Result=b"go")
        resumed = _step_result(client, arn, f"resumed-{index}")
        samples.append(resumed - sent)
    return _summary(samples)


def _history(client: Any, arn: str) -> list[dict[str, Any]]:
    events, marker = [], None
    while True:
        page = client.get_durable_execution_history(
            DurableExecutionArn=arn, MaxItems=1000, **({"Marker": marker} if marker else {})
        )
        events += page["Events"]
        if not (marker := page.get("NextMarker")):
            return events


def _pending_callback(client: Any, arn: str, name: str) -> str:
    """The callback's id once the invocation that created it has ended (the handler waits)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        events = _history(client, arn)
        started = [
            i for i, e in enumerate(events) if e["EventType"] == "CallbackStarted" and e.get("Name") == name
        ]
        if started and any(e["EventType"] == "InvocationCompleted" for e in events[started[0] :]):
            return events[started[0]]["CallbackStartedDetails"]["CallbackId"]
        time.sleep(0.02)
    raise TimeoutError(f"callback {name} never became pending")


def _step_result(client: Any, arn: str, name: str) -> float:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for event in _history(client, arn):
            if event["EventType"] == "StepSucceeded" and event.get("Name") == name:
                return float(json.loads(event["StepSucceededDetails"]["Result"]["Payload"]))
        time.sleep(0.01)
    raise TimeoutError(f"step {name} never ran")


if __name__ == "__main__":
    main()
