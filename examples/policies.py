"""Step configurations shared by the demo functions.

Only :class:`~examples.services.TransientServiceError` is retried: a declined
card or a poisoned record fails the step at once, so the workflow can take its
failure path instead of burning retries. Backoff doubles from
``retry_delay_seconds`` (input, default 2 s) up to a minute, with half jitter
so the growth stays visible on the console timeline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aws_durable_execution_sdk_python import StepError
from aws_durable_execution_sdk_python.config import (
    Duration,
    JitterStrategy,
    StepConfig,
    StepSemantics,
)
from aws_durable_execution_sdk_python.retries import (
    RetryDecision,
    RetryStrategyConfig,
    create_retry_strategy,
)

from examples.inputs import int_field
from examples.services import TransientServiceError


def transient_retry_config(
    event: Mapping[str, Any], *, default_attempts: int = 4, default_delay: int = 2
) -> RetryStrategyConfig:
    """Exponential backoff for transient service errors.

    The input's ``max_attempts`` and ``retry_delay_seconds`` override the
    defaults for every step of the execution.
    """
    attempts = int_field(event, "max_attempts", default_attempts, minimum=1, maximum=20)
    delay = int_field(event, "retry_delay_seconds", default_delay, minimum=1, maximum=600)
    return RetryStrategyConfig(
        max_attempts=attempts,
        initial_delay=Duration.from_seconds(delay),
        max_delay=Duration.from_minutes(1),
        backoff_rate=2.0,
        jitter_strategy=JitterStrategy.HALF,
        retryable_error_types=[TransientServiceError],
    )


def transient_retry(
    event: Mapping[str, Any], *, default_attempts: int = 4, default_delay: int = 2
) -> Callable[[Exception, int], RetryDecision]:
    """The retry strategy of :func:`transient_retry_config`."""
    config = transient_retry_config(event, default_attempts=default_attempts, default_delay=default_delay)
    return create_retry_strategy(config)


def retrying_step(
    event: Mapping[str, Any], *, default_attempts: int = 4, default_delay: int = 2
) -> StepConfig:
    """A step that may safely run again: retried on transient errors."""
    return StepConfig(
        retry_strategy=transient_retry(event, default_attempts=default_attempts, default_delay=default_delay)
    )


def money_step(event: Mapping[str, Any], *, default_attempts: int = 4, default_delay: int = 2) -> StepConfig:
    """A step that moves money: at most once per attempt.

    The START checkpoint is written before the body runs, so a worker that dies
    mid-charge does not charge again on replay: the step fails with
    StepInterruptedError, which the retry strategy does not retry, and the
    workflow compensates instead of risking a double charge.
    """
    return StepConfig(
        retry_strategy=transient_retry(event, default_attempts=default_attempts, default_delay=default_delay),
        step_semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY,
    )


# Compensations must finish: by default they get more attempts than the forward
# steps (an explicit max_attempts in the input applies to them too).
COMPENSATION_ATTEMPTS = 8


def compensation_step(event: Mapping[str, Any]) -> StepConfig:
    """A step that undoes a payment through an idempotent call (void, refund).

    At least once, unlike the money steps: the call is safe to repeat, and a
    compensation that a dead worker interrupted must run again, not give up.
    """
    return retrying_step(event, default_attempts=COMPENSATION_ATTEMPTS)


INTERRUPTED_ERROR_TYPE = "StepInterruptedError"


def was_interrupted(error: StepError) -> bool:
    """Whether an AT_MOST_ONCE step failed because an attempt was interrupted mid-body.

    Its worker died or its invocation timed out after the START checkpoint: the
    call may or may not have taken effect, so the workflow must ask the service
    (by the idempotency key) and undo what happened. The checkpointed type is
    the SDK's fully qualified class name.
    """
    return (error.error_type or "").rsplit(".", 1)[-1] == INTERRUPTED_ERROR_TYPE
