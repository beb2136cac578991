"""A durable handler hosted outside Durable Console (no Django here).

Run by ``python -m executions.workers.remote_runtime tests.api_remote_handler:handler``
in its own process; the SDK's default ``LambdaClient`` checkpoints over HTTP
to the server named by ``AWS_ENDPOINT_URL_LAMBDA``.
"""

from __future__ import annotations

import os

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration


@durable_execution
def handler(event: dict, context: DurableContext) -> dict:
    pid = context.step(lambda _: os.getpid(), name="where")
    context.wait(Duration.from_seconds(1), name="pause")  # forces a second, replaying invocation
    total = context.step(lambda _: sum(event["numbers"]), name="sum")
    answer = context.create_callback(name="confirm").result()
    return {"total": total, "ran_in": pid, "confirmed": answer}
