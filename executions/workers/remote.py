"""Handlers hosted outside the workers: an HTTP endpoint that takes the Lambda event.

A function whose handler is an ``http(s)://`` URL is called the way Lambda
calls a container: the worker POSTs the invocation event as JSON (the real
Lambda shape, timestamps in epoch *milliseconds*, docs/api.md) and reads
the handler's output JSON from the response. The URL can be the runtime
interface emulator of an AWS Lambda base image
(``http://host:9000/2015-03-31/functions/function/invocations``) or
``python -m executions.workers.remote_runtime``. The handler there checkpoints back
over HTTP with the SDK's own ``LambdaClient``, pointed at this server by
``AWS_ENDPOINT_URL_LAMBDA`` and signing with an access key.

The worker still owns the invocation (lease, token lineage, outcome); only the
call itself crosses the network.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from aws_durable_execution_sdk_python.execution import DurableExecutionInvocationInput

URL_PREFIXES = ("http://", "https://")
# Lambda's own cap on one invocation; the worker's lease is renewed meanwhile.
INVOCATION_TIMEOUT_SECONDS = 15 * 60


class RemoteFunctionError(Exception):
    """The remote handler failed (a Lambda function error): the invocation is retried."""


def is_remote(handler: str) -> bool:
    return handler.startswith(URL_PREFIXES)


class RemoteHandler:
    """A callable with a local handler's signature that runs the handler at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self, event: Any, context: Any) -> Any:
        if isinstance(event, DurableExecutionInvocationInput):
            # The in-process client stays here; the remote side brings its own.
            event = event.to_json_dict()
        request = urllib.request.Request(
            self.url,
            data=json.dumps(event).encode(),
            headers={
                "Content-Type": "application/json",
                "Lambda-Runtime-Aws-Request-Id": getattr(context, "aws_request_id", ""),
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=INVOCATION_TIMEOUT_SECONDS) as response:
                body = response.read()
                function_error = response.headers.get("X-Amz-Function-Error")
        except (urllib.error.URLError, TimeoutError) as exc:
            raise RemoteFunctionError(f"Remote handler {self.url} unreachable: {exc}") from exc
        output = json.loads(body) if body.strip() else None
        if function_error or _looks_like_error(output):
            raise RemoteFunctionError(_error_message(output))
        return output


def _looks_like_error(output: Any) -> bool:
    # The emulator answers a raised handler with 200 and Lambda's error payload.
    return isinstance(output, dict) and "errorType" in output and "Status" not in output


def _error_message(output: Any) -> str:
    if isinstance(output, dict):
        return f"{output.get('errorType', 'Error')}: {output.get('errorMessage', '')}"
    return f"Remote handler failed: {str(output)[:500]}"
