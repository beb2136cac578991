"""Invoke as the Lambda API defines it, on top of the engine (docs/api.md, Operations).

- A durable function starts (or, by name, finds) an execution through
  ``execution_start``. ``Event`` returns at once; ``RequestResponse`` waits
  for the whole execution, polling its row up to a deadline; ``DryRun`` only
  checks that it could start.
- A plain function runs once in a sandbox child (``executions.workers.sandbox``),
  waited for by this request for ``RequestResponse`` and by a background thread
  for ``Event``, like a Lambda invoke without durability.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connections

from executions.engine.errors import InvalidParameterValue, ResourceNotFound
from executions.engine.functions import function_arn, limits_for_version
from executions.engine.starts import EXECUTION_NAME_PATTERN, execution_start
from executions.models import Execution, ExecutionStatus, Function
from executions.queries.listing import resolve_with_qualifier
from executions.workers.invoker import SandboxRunner, plain_result
from executions.workers.runtime import PlainCall

logger = logging.getLogger(__name__)

INVOCATION_TYPES = frozenset({"RequestResponse", "Event", "DryRun"})
POLL_START_SECONDS = 0.01
POLL_MAX_SECONDS = 0.2


@dataclass(frozen=True)
class InvokeRequest:
    function: str
    qualifier: str | None
    payload: str
    invocation_type: str = "RequestResponse"
    execution_name: str | None = None
    tenant_id: str = ""


@dataclass(frozen=True)
class InvokeResult:
    status_code: int
    payload: str | None = None
    function_error: str | None = None
    executed_version: str = "$LATEST"
    execution_arn: str | None = None


def invoke(request: InvokeRequest) -> InvokeResult:
    """Validate everything before any state changes, then run the invocation."""
    if request.invocation_type not in INVOCATION_TYPES:
        raise InvalidParameterValue(f"Invalid InvocationType: {request.invocation_type!r}")
    function, qualifier = resolve_with_qualifier(request.function, request.qualifier)
    if not function.enabled:
        raise ResourceNotFound(f"Function {function.name} is disabled.")
    if request.execution_name is not None and not EXECUTION_NAME_PATTERN.match(request.execution_name):
        raise InvalidParameterValue("DurableExecutionName must be 1-64 characters of [A-Za-z0-9_-]")
    version = qualifier or "$LATEST"
    if request.invocation_type == "DryRun":
        return InvokeResult(204, executed_version=version)
    if function.durable:
        return _invoke_durable(request, function, qualifier)
    return _invoke_plain(request, function, version)


# --- durable functions ------------------------------------------------------------------------


def _invoke_durable(request: InvokeRequest, function: Function, qualifier: str | None) -> InvokeResult:
    reference = function.name if not qualifier else f"{function.name}:{qualifier}"
    started = execution_start(
        function=reference,
        input_payload=request.payload,
        name=request.execution_name,
        tenant_id=request.tenant_id,
    )
    execution = started.execution
    version = _version_label(execution)
    if request.invocation_type == "Event":
        return InvokeResult(202, executed_version=version, execution_arn=execution.arn)
    return _sync_outcome(wait_for_end(execution), version)


def _version_label(execution: Execution) -> str:
    # arn:...:function:NAME:LABEL/durable-execution/... ; the label is "$LATEST" or a number.
    return execution.arn.split("/durable-execution/")[0].rsplit(":", 1)[1]


def wait_for_end(execution: Execution) -> Execution:
    """Poll the execution's row until it is terminal or the sync-invoke deadline passes."""
    deadline = time.monotonic() + min(
        settings.DURABLE_API_SYNC_INVOKE_MAX_SECONDS, execution.execution_timeout + 5
    )
    delay = POLL_START_SECONDS
    while True:
        current = Execution.objects.only("status", "result", "error", "arn").get(pk=execution.pk)
        if current.is_terminal or time.monotonic() >= deadline:
            return current
        time.sleep(delay)
        delay = min(delay * 1.5, POLL_MAX_SECONDS)


def _sync_outcome(execution: Execution, version: str) -> InvokeResult:
    if execution.status == ExecutionStatus.SUCCEEDED:
        return InvokeResult(
            200,
            payload=execution.result or "",
            executed_version=version,
            execution_arn=execution.arn,
        )
    if execution.is_terminal:
        error = execution.error or {}
        payload = _function_error_payload(
            error.get("ErrorType") or f"Execution{execution.status.title().replace('_', '')}",
            error.get("ErrorMessage") or f"Execution {execution.status}",
            error.get("StackTrace"),
        )
    else:  # the wait hit its deadline; the execution goes on
        payload = _function_error_payload(
            "DurableExecution.StillRunning",
            "The durable execution is still running; poll GetDurableExecution with the ARN "
            "in X-Amz-Durable-Execution-Arn.",
        )
    return InvokeResult(
        200,
        payload=payload,
        function_error="Unhandled",
        executed_version=version,
        execution_arn=execution.arn,
    )


def _function_error_payload(error_type: str, message: str, stack_trace: list[str] | None = None) -> str:
    """Lambda's payload for a function error (what a raised handler returns)."""
    return json.dumps({"errorMessage": message, "errorType": error_type, "stackTrace": stack_trace or []})


# --- plain functions ----------------------------------------------------------------------------


def _invoke_plain(request: InvokeRequest, function: Function, version: str) -> InvokeResult:
    if request.invocation_type == "Event":
        thread = threading.Thread(
            target=_run_plain_in_background,
            args=(function, request),
            daemon=True,
            name=f"plain-invoke-{function.name}",
        )
        thread.start()
        return InvokeResult(202, executed_version=version)
    result, error = run_plain(function, request.payload, request.tenant_id)
    if error is not None:
        return InvokeResult(200, payload=error, function_error="Unhandled", executed_version=version)
    return InvokeResult(200, payload=result, executed_version=version)


def run_plain(function: Function, payload: str, tenant_id: str) -> tuple[str | None, str | None]:
    """Call a plain function's handler once in a sandbox: (result JSON, None) or (None, error payload)."""
    call = PlainCall(
        handler=function.handler,
        function_name=function.name,
        function_version=function.version,
        function_arn=function_arn(function),
        payload=payload,
        tenant_id=tenant_id,
    )
    limits = limits_for_version(function.pk, function.version)
    result = plain_result(SandboxRunner().run_plain(call, limits))
    if result.error is not None:
        error = result.error
        return None, _function_error_payload(
            error.get("ErrorType") or "Error", error.get("ErrorMessage") or "", error.get("StackTrace")
        )
    return result.result, None


def _run_plain_in_background(function: Function, request: InvokeRequest) -> None:
    try:
        _, error = run_plain(function, request.payload, request.tenant_id)
        if error is not None:
            logger.warning("async invoke of %s failed: %s", function.name, error)
    finally:
        connections.close_all()  # this thread ends here; so does its connection
