"""Every use of the SDK's private names, in one place.

The engine tunes a few module-level constants of aws-durable-execution-sdk-python that
are not part of its public API. Each one is listed here with why; ``apply`` checks that
every name still exists before it sets any, so an SDK upgrade that renames or removes
one fails loudly at the sandbox's start (and in tests/test_sdk_internals.py) instead of
silently losing the tuning. Checked against the SDK version in ``CHECKED_AGAINST``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module, metadata

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


def check() -> None:
    """Raise ``SdkInternalsMoved`` naming every tuned name the installed SDK lacks."""
    missing = [f"{t.module}.{t.name}" for t in TUNINGS if not hasattr(import_module(t.module), t.name)]
    if missing:
        installed = metadata.version(SDK_DISTRIBUTION)
        raise SdkInternalsMoved(
            f"{SDK_DISTRIBUTION} {installed} lacks {', '.join(missing)} (checked against "
            f"{CHECKED_AGAINST}): see executions/workers/sdk_internals.py"
        )


def apply() -> None:
    """Set every tuning from its setting, after checking that all of them still exist."""
    check()
    for tuning in TUNINGS:
        setattr(import_module(tuning.module), tuning.name, getattr(settings, tuning.setting))
