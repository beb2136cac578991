"""The in-process ``DurableServiceClient``: the SDK checkpoints straight into the database.

No HTTP hop (docs/architecture.md): the worker hands the SDK this client through
``DurableExecutionInvocationInputWithClient``. The SDK calls it from its own
short-lived threads, so every call runs on one long-lived thread per worker,
which keeps one database connection open instead of one per SDK thread.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

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

from executions.engine import checkpoint as checkpoint_service
from executions.engine.errors import InvalidCheckpointToken, ServiceError, TooManyRequests


class DatabaseServiceClient:
    """Implements the SDK's DurableServiceClient protocol against ``executions`` services."""

    def __init__(self, db_thread: ThreadPoolExecutor) -> None:
        self._db_thread = db_thread

    def checkpoint(
        self,
        durable_execution_arn: str,
        checkpoint_token: str,
        updates: list[OperationUpdate],
        client_token: str | None,
    ) -> CheckpointOutput:
        wire_updates = [dict(update.to_dict()) for update in updates]
        try:
            response = self._db_thread.submit(
                checkpoint_service.checkpoint,
                durable_execution_arn,
                checkpoint_token,
                wire_updates,
                client_token,
            ).result()
        except ServiceError as exc:
            raise CheckpointError(
                f"{exc.code}: {exc.message}", error_category=_category(exc), error=_aws_error(exc)
            ) from exc
        return CheckpointOutput.from_dict(response)

    def get_execution_state(
        self,
        durable_execution_arn: str,
        checkpoint_token: str,
        next_marker: str,
        max_items: int = 1000,
    ) -> StateOutput:
        try:
            response = self._db_thread.submit(
                checkpoint_service.get_state,
                durable_execution_arn,
                checkpoint_token,
                next_marker,
                max_items,
            ).result()
        except ServiceError as exc:
            raise GetExecutionStateError(
                f"{exc.code}: {exc.message}", error_category=_category(exc), error=_aws_error(exc)
            ) from exc
        return StateOutput.from_dict(response)


def _category(exc: ServiceError) -> DurableApiErrorCategory:
    """Classify as the SDK would for the same HTTP error (docs/api.md, Errors)."""
    if isinstance(exc, (InvalidCheckpointToken, TooManyRequests)) or exc.http_status >= 500:
        return DurableApiErrorCategory.INVOCATION
    return DurableApiErrorCategory.EXECUTION


def _aws_error(exc: ServiceError) -> Any:
    return {"Code": exc.code, "Message": exc.message}
