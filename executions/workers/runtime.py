"""What runs a handler once: the Lambda event and context, and the call itself.

A sandbox child (``executions.workers.sandbox_child``) runs this for every job
its supervisor sends; nothing in a process that serves people calls it. The
handler gets ``DurableExecutionInvocationInputWithClient`` with the
database-backed client, so its checkpoints go straight to the database from
the child (one transaction each, no HTTP hop).
"""

from __future__ import annotations

import json
import logging
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_durable_execution_sdk_python.execution import (
    DurableExecutionInvocationInputWithClient,
    InitialExecutionState,
)
from aws_durable_execution_sdk_python.lambda_service import ErrorObject, Operation

from executions import tracing
from executions.engine.functions import FunctionLimits, load_handler
from executions.services import InvocationInput
from executions.workers import sdk_internals
from executions.workers.client import DatabaseServiceClient
from executions.workers.shared_connection import SharedConnection

logger = logging.getLogger(__name__)


def tune_sdk() -> None:
    """Apply the engine's tunings of SDK internals (``executions.workers.sdk_internals``)."""
    sdk_internals.apply()


@dataclass(frozen=True)
class PlainCall:
    """One call of a plain (non-durable) function: a chained-invoke target or an API invoke."""

    handler: str
    function_name: str
    function_version: int
    function_arn: str
    payload: str | None
    tenant_id: str = ""


@dataclass(frozen=True)
class DurableResult:
    """What the handler returned (its invocation output) or raised (an error object)."""

    output: Any = None
    raised: dict[str, Any] | None = None


@dataclass(frozen=True)
class PlainResult:
    """A plain call's JSON result, or its error object."""

    result: str | None = None
    error: dict[str, Any] | None = None


@dataclass
class LambdaContext:
    """What a handler's second argument offers on Lambda (the SDK's ``LambdaContext``)."""

    aws_request_id: str
    function_name: str | None = None
    function_version: str | None = None
    invoked_function_arn: str | None = None
    tenant_id: str | None = None
    log_group_name: str | None = None
    log_stream_name: str | None = None
    memory_limit_in_mb: str | None = None
    client_context: Any | None = None
    identity: Any | None = None
    deadline: float | None = None  # time.monotonic() when the function's Timeout runs out

    def get_remaining_time_in_millis(self) -> int:
        if self.deadline is None:
            return 900_000
        return max(0, int((self.deadline - time.monotonic()) * 1000))

    def log(self, msg: str) -> None:
        logger.info("%s", msg)


class HandlerRuntime:
    """Runs handlers in the calling process. Not thread-safe: one job at a time."""

    def __init__(
        self, client_factory: Callable[[SharedConnection], DatabaseServiceClient] = DatabaseServiceClient
    ) -> None:
        # The SDK calls the client from short-lived threads of its own; one shared
        # connection per process serves them all (executions.workers.shared_connection).
        self._connection = SharedConnection()
        self.client = client_factory(self._connection)

    def close(self) -> None:
        self._connection.close()

    def check_connection(self) -> None:
        """Check the checkpoint connection before its next query (CONN_HEALTH_CHECKS)."""
        self._connection.check()

    def run_durable(self, invocation: InvocationInput, limits: FunctionLimits) -> DurableResult:
        with tracing.invocation(
            invocation.arn, invocation.invocation, invocation.function_name, invocation.request_id
        ) as span:
            result = self._run_durable(invocation, limits)
            if span is not None:
                tracing.invocation_outcome(span, *_outcome(result))
            return result

    def _run_durable(self, invocation: InvocationInput, limits: FunctionLimits) -> DurableResult:
        deadline = time.monotonic() + limits.timeout_seconds
        self.client.begin_invocation(invocation)
        try:
            handler = load_handler(invocation.handler)
            output = handler(self._event(invocation), _durable_context(invocation, limits, deadline))
        except Exception as exc:  # a Lambda function error: the invocation is retried
            logger.warning("invocation %s of %s raised: %r", invocation.invocation, invocation.arn, exc)
            return DurableResult(raised=dict(ErrorObject.from_exception(exc).to_dict()))
        finally:
            self.client.end_invocation()
        return DurableResult(output=output)

    def run_plain(self, call: PlainCall, limits: FunctionLimits) -> PlainResult:
        deadline = time.monotonic() + limits.timeout_seconds
        try:
            handler: Callable[..., Any] = load_handler(call.handler)
            event = json.loads(call.payload) if call.payload and call.payload.strip() else {}
            context = LambdaContext(
                aws_request_id=str(uuid.uuid4()),
                function_name=call.function_name,
                function_version=str(call.function_version),
                invoked_function_arn=call.function_arn,
                tenant_id=call.tenant_id or None,
                memory_limit_in_mb=str(limits.memory_mb),
                deadline=deadline,
            )
            return PlainResult(result=json.dumps(handler(event, context)))
        except Exception as exc:  # the target's error is the caller's error
            return PlainResult(error=_error_with_stack(exc))

    def _event(self, invocation: InvocationInput) -> DurableExecutionInvocationInputWithClient:
        return DurableExecutionInvocationInputWithClient(
            durable_execution_arn=invocation.arn,
            checkpoint_token=invocation.token,
            initial_execution_state=InitialExecutionState(
                operations=[Operation.from_dict(op) for op in invocation.operations],
                next_marker=invocation.next_marker,
            ),
            updated_operation_ids=invocation.updated_operation_ids,
            service_client=self.client,
        )


def _outcome(result: DurableResult) -> tuple[str, dict[str, Any] | None]:
    """What the handler's run says about how the invocation ended (for its span)."""
    if result.raised is not None:
        return "ERROR", result.raised
    output = result.output if isinstance(result.output, dict) else {}
    status = output.get("Status")
    error = output.get("Error") if isinstance(output.get("Error"), dict) else None
    return (status if status in ("SUCCEEDED", "FAILED", "PENDING") else "INVALID"), error


def _durable_context(invocation: InvocationInput, limits: FunctionLimits, deadline: float) -> LambdaContext:
    return LambdaContext(
        aws_request_id=invocation.request_id,
        function_name=invocation.function_name,
        function_version=str(invocation.function_version),
        invoked_function_arn=invocation.arn.split("/durable-execution/")[0],
        tenant_id=invocation.tenant_id or None,
        memory_limit_in_mb=str(limits.memory_mb),
        deadline=deadline,
    )


def _error_with_stack(exc: BaseException) -> dict[str, Any]:
    error = dict(ErrorObject.from_exception(exc).to_dict())
    if not error.get("StackTrace"):
        error["StackTrace"] = traceback.format_exception(exc)[-5:]
    return error
