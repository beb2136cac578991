"""Helpers shared by the catalogue handlers.

Everything here is deterministic. The only module-level state is keyed by the
durable execution ARN, so two backends can run the same case in one process.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

from aws_durable_execution_sdk_python import DurableContext, DurableOperationError
from aws_durable_execution_sdk_python.config import Duration, JitterStrategy
from aws_durable_execution_sdk_python.retries import (
    RetryStrategyConfig,
    create_retry_strategy,
)

_lock = threading.Lock()
_counters: dict[tuple[str, str], int] = defaultdict(int)


class CatalogueError(Exception):
    """A user-defined error, so its wire ErrorType is fully qualified."""


def bump(context: DurableContext, key: str) -> int:
    """Count how often ``key`` was reached in this execution (1 on the first time)."""
    return bump_arn(context.execution_context.durable_execution_arn, key)


def bump_arn(arn: str, key: str) -> int:
    """Like :func:`bump`, for code that only has the ARN."""
    with _lock:
        _counters[(arn, key)] += 1
        return _counters[(arn, key)]


def reset_state() -> None:
    """Forget all per-execution counters (only needed if a backend reuses ARNs)."""
    with _lock:
        _counters.clear()


def fast_retry(max_attempts: int, **kwargs: Any):
    """A deterministic retry strategy: 1 s delays, no backoff growth, no jitter."""
    return create_retry_strategy(
        RetryStrategyConfig(
            max_attempts=max_attempts,
            initial_delay=Duration.from_seconds(1),
            max_delay=Duration.from_seconds(1),
            backoff_rate=1,
            jitter_strategy=JitterStrategy.NONE,
            **kwargs,
        )
    )


def describe(err: BaseException, *, with_message: bool = True) -> dict[str, Any]:
    """A JSON-friendly, deterministic description of a caught error.

    ``with_message=False`` drops the message when the service, not the SDK or
    user code, wrote it (it legitimately differs between backends).
    """
    out: dict[str, Any] = {"kind": type(err).__name__}
    if isinstance(err, DurableOperationError):
        out["type"] = err.error_type
        if with_message:
            out["message"] = err.message
    elif with_message:
        out["message"] = str(err)
    return out


def batch_summary(batch: Any) -> dict[str, Any]:
    """A JSON-friendly summary of a map/parallel BatchResult."""
    return {
        "reason": batch.completion_reason.value,
        "statuses": [item.status.value for item in batch.all],
        "results": batch.get_results(),
        "errors": [e.type if e else None for e in batch.get_errors()],
    }
