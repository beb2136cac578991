"""Every use of the SDK's private names, in one place.

The engine tunes a few module-level constants of aws-durable-execution-sdk-python that
are not part of its public API, and wraps one private method. Each one is listed here
with why; ``apply`` checks that every name still exists before it changes any, so an
SDK upgrade that renames or removes one fails loudly at the sandbox's start (and in
tests/test_sdk_internals.py) instead of silently losing the tuning. Checked against
the SDK version in ``CHECKED_AGAINST``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module, metadata
from typing import Any

from django.conf import settings

SDK_DISTRIBUTION = "aws-durable-execution-sdk-python"
CHECKED_AGAINST = "3.0.0"


class SdkInternalsMoved(RuntimeError):
    """A private SDK name the engine tunes is gone: re-check this module against the SDK."""


@dataclass(frozen=True)
class Tuning:
    module: str
    name: str
    setting: str  # the Django setting that holds the value
    why: str


TUNINGS = (
    Tuning(
        module="aws_durable_execution_sdk_python.state",
        name="_STOP_SIGNAL_POLL_SECONDS",
        setting="DURABLE_SDK_STOP_POLL_SECONDS",
        why=(
            "The SDK's checkpoint thread polls its stop signal every 100 ms, so every invocation "
            "would end up to 100 ms after the handler returned (hidden by Lambda's runtime, here a "
            "cap of ~10 invocations/s per sandbox). Polling every few ms changes nothing a handler sees."
        ),
    ),
)


# The lone-caller batching wait (see ``_skip_lone_caller_wait``): what it relies on.
STATE_MODULE = "aws_durable_execution_sdk_python.state"
READ_TIMEOUT = ("ExecutionState", "_read_timeout", ("self", "batch", "now", "deadline"))
# Instance attributes, set in __init__: checked in the classes' source.
INSTANCE_ATTRIBUTES = (("ExecutionState", "_branch_pools"), ("_BatchAccumulator", "has_blocked_caller"))


def check() -> None:
    """Raise ``SdkInternalsMoved`` naming every private name the installed SDK lacks."""
    missing = [f"{t.module}.{t.name}" for t in TUNINGS if not hasattr(import_module(t.module), t.name)]
    missing += _missing_for_batching_wait()
    if missing:
        installed = metadata.version(SDK_DISTRIBUTION)
        raise SdkInternalsMoved(
            f"{SDK_DISTRIBUTION} {installed} lacks {', '.join(missing)} (checked against "
            f"{CHECKED_AGAINST}): see executions/workers/sdk_internals.py"
        )


def _missing_for_batching_wait() -> list[str]:
    state = import_module(STATE_MODULE)
    class_name, method_name, parameters = READ_TIMEOUT
    method = getattr(getattr(state, class_name, None), method_name, None)
    missing = []
    if method is None or tuple(inspect.signature(method).parameters) != parameters:
        missing.append(f"{STATE_MODULE}.{class_name}.{method_name}{parameters}")
    for owner, attribute in INSTANCE_ATTRIBUTES:
        cls = getattr(state, owner, None)
        if cls is None or f"self.{attribute}" not in inspect.getsource(cls):
            missing.append(f"{STATE_MODULE}.{owner}.{attribute}")
    return missing


def apply() -> None:
    """Apply every tuning, after checking that all the names they use still exist."""
    check()
    for tuning in TUNINGS:
        setattr(import_module(tuning.module), tuning.name, getattr(settings, tuning.setting))
    state_class = getattr(import_module(STATE_MODULE), READ_TIMEOUT[0])
    current = getattr(state_class, READ_TIMEOUT[1])
    if not getattr(current, "skips_lone_caller_wait", False):
        setattr(state_class, READ_TIMEOUT[1], _skip_lone_caller_wait(current))


def _skip_lone_caller_wait(read_timeout: Callable[..., float]) -> Callable[..., float]:
    """No batching wait when nothing could join the batch.

    Before sending a batch that holds a synchronous checkpoint (its caller is blocked
    until the batch is written), the SDK's batcher waits ``_BLOCKED_CALLER_WAIT_SECONDS``
    (1 ms) for sibling operations. Siblings come only from other threads of the
    handler: the branches of ``parallel`` and ``map``, whose thread pools the SDK
    registers in ``_branch_pools``. With no such pool the blocked caller is the only
    thread that queues checkpoints, and it queued its own last, so the batch already
    holds everything there is: waiting adds 1 ms to every step (most of the SDK's own
    per-step cost on a 2-core machine) and batches nothing more.
    """

    @functools.wraps(read_timeout)
    def skipping(self: Any, batch: Any, now: float, deadline: float) -> float:
        if batch.has_blocked_caller and not getattr(self, "_branch_pools", True):
            return 0.0  # the batcher sends at once
        return read_timeout(self, batch, now, deadline)

    skipping.skips_lone_caller_wait = True  # type: ignore[attr-defined]
    return skipping
