"""A handler runner for tests that need handlers in the test process itself.

The synchronous engine driver moves a test clock and the catalogue handlers
count attempts in module globals; neither crosses into a sandbox child. Every
worker of the product (Celery tasks, the embedded pool, API invokes) runs
handlers in sandboxes; tests of that live in tests/test_sandbox*.py.
"""

from __future__ import annotations

import os
import threading

from executions.engine.functions import FunctionLimits
from executions.services import InvocationInput
from executions.workers.runtime import HandlerRuntime, PlainCall, tune_sdk
from executions.workers.sandbox import SandboxRun


class InProcessRunner:
    """Runs handlers on the calling thread, with no limits enforced."""

    def __init__(self) -> None:
        tune_sdk()
        self.runtime = HandlerRuntime()

    def run_durable(
        self, invocation: InvocationInput, limits: FunctionLimits, cancel: threading.Event | None = None
    ) -> SandboxRun:
        # ``cancel`` is not honoured: nothing can stop a handler on the calling thread.
        return SandboxRun(self.runtime.run_durable(invocation, limits), None, os.getpid(), None)

    def run_plain(
        self, call: PlainCall, limits: FunctionLimits, cancel: threading.Event | None = None
    ) -> SandboxRun:
        return SandboxRun(self.runtime.run_plain(call, limits), None, os.getpid(), None)

    def close(self) -> None:
        self.runtime.close()
