"""The in-process ``DurableServiceClient``: the SDK checkpoints straight into the database.

No HTTP hop (docs/architecture.md): the worker hands the SDK this client through
``DurableExecutionInvocationInputWithClient``. The SDK calls it from its own
short-lived threads; every call uses the process's one ``SharedConnection``.
For the invocation in progress the client holds a ``CheckpointCache``, so a
checkpoint usually takes the engine's one-statement fast path
(``executions.engine.checkpoint_fast``).
"""

from __future__ import annotations

import time
from typing import Any, TypeVar

from aws_durable_execution_sdk_python.exceptions import (
    CheckpointError,
    DurableApiErrorCategory,
    GetExecutionStateError,
)
from aws_durable_execution_sdk_python.lambda_service import (
    CheckpointOutput,
    OperationUpdate,
    StateOutput,
)

from executions import tracing
from executions.engine import checkpoint as checkpoint_service
from executions.engine.checkpoint_fast import CheckpointCache
from executions.engine.errors import InvalidCheckpointToken, ServiceError, TooManyRequests
from executions.engine.invocations import InvocationInput
from executions.metrics import CheckpointRecorder
from executions.workers.shared_connection import SharedConnection

E = TypeVar("E", CheckpointError, GetExecutionStateError)
# Checkpoints applied from sandboxes: duration and operations (executions/metrics.py).
CHECKPOINTS = CheckpointRecorder("sdk")


class DatabaseServiceClient:
    """Implements the SDK's DurableServiceClient protocol against ``executions`` services."""

    def __init__(self, connection: SharedConnection) -> None:
        self._connection = connection
        self.cache: CheckpointCache | None = None

    def begin_invocation(self, invocation: InvocationInput) -> None:
        """Start the invocation's cache from what it was given (and the rows, when they came along)."""
        operation_ids = (op["Id"] for op in invocation.operations)
        self.cache = CheckpointCache.for_invocation(operation_ids, complete=not invocation.next_marker)
        if invocation.state is not None:
            execution, operations = invocation.state
            self.cache.remember(execution, invocation.token, operations)

    def end_invocation(self) -> None:
        self.cache = None

    def checkpoint(
        self,
        durable_execution_arn: str,
        checkpoint_token: str,
        updates: list[OperationUpdate],
        client_token: str | None,
    ) -> CheckpointOutput:
        wire_updates = [dict(update.to_dict()) for update in updates]
        span = tracing.checkpoint_started(durable_execution_arn, wire_updates)
        began = time.perf_counter()
        try:
            response = self._connection.run(
                checkpoint_service.checkpoint,
                durable_execution_arn,
                checkpoint_token,
                wire_updates,
                client_token,
                cache=self.cache,
            )
        except ServiceError as exc:
            tracing.checkpoint_ended(span, exc)
            raise _sdk_error(CheckpointError, exc) from exc
        CHECKPOINTS.record(time.perf_counter() - began, wire_updates)
        tracing.checkpoint_ended(span)
        return CheckpointOutput.from_dict(response)

    def get_execution_state(
        self,
        durable_execution_arn: str,
        checkpoint_token: str,
        next_marker: str,
        max_items: int = 1000,
    ) -> StateOutput:
        try:
            response = self._connection.run(
                checkpoint_service.get_state,
                durable_execution_arn,
                checkpoint_token,
                next_marker,
                max_items,
            )
        except ServiceError as exc:
            raise _sdk_error(GetExecutionStateError, exc) from exc
        return StateOutput.from_dict(response)


def _sdk_error(error_class: type[E], exc: ServiceError) -> E:
    """The SDK's error for a service error, classified as the SDK would classify it over HTTP."""
    return error_class(f"{exc.code}: {exc.message}", error_category=_category(exc), error=_aws_error(exc))


def _category(exc: ServiceError) -> DurableApiErrorCategory:
    """Classify as the SDK would for the same HTTP error (docs/api.md, Errors)."""
    if isinstance(exc, (InvalidCheckpointToken, TooManyRequests)) or exc.http_status >= 500:
        return DurableApiErrorCategory.INVOCATION
    return DurableApiErrorCategory.EXECUTION


def _aws_error(exc: ServiceError) -> Any:
    return {"Code": exc.code, "Message": exc.message}
