"""A worker's invoker: claims invocations and has a runner execute the handler.

The invoker owns everything about an invocation except running the handler:
it claims it (lease + fresh token lineage), keeps the lease alive, and
records the outcome. The handler itself runs in a sandbox child
(``SandboxRunner``, what every worker uses), under its function's Timeout and
MemorySize; a timeout, crash or memory overrun is recorded as a failed
invocation and retried like a raised one. The invoker keeps going while the
execution needs another invocation right away, saving a dispatch round trip.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from django.conf import settings
from django.db import connections

from executions import services
from executions.errors import ServiceError
from executions.functions import FunctionLimits, function_arn, function_resolve, limits_for_version
from executions.models import InvocationOutcome, Operation
from executions.services import InvocationInput
from executions.workers.runtime import DurableResult, PlainCall, PlainResult
from executions.workers.sandbox import (
    EXIT_ERROR,
    SandboxFailure,
    SandboxPool,
    SandboxRun,
    SandboxUnavailable,
    shared_pool,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 100000}"


class HandlerRunner(Protocol):
    """Runs one handler call somewhere and says how it went."""

    def run_durable(self, invocation: InvocationInput, limits: FunctionLimits) -> SandboxRun: ...

    def run_plain(self, call: PlainCall, limits: FunctionLimits) -> SandboxRun: ...


class SandboxRunner:
    """Runs handlers in this process's sandbox children (``executions.workers.sandbox``)."""

    def __init__(self, pool: SandboxPool | None = None) -> None:
        self._pool = pool

    @property
    def pool(self) -> SandboxPool:
        return self._pool or shared_pool()

    def run_durable(self, invocation: InvocationInput, limits: FunctionLimits) -> SandboxRun:
        return self._run("durable", invocation, limits, invocation.request_id)

    def run_plain(self, call: PlainCall, limits: FunctionLimits) -> SandboxRun:
        return self._run("plain", call, limits, f"{call.function_name}:{call.function_version}")

    def _run(self, kind: str, job: Any, limits: FunctionLimits, request_id: str) -> SandboxRun:
        try:
            return self.pool.run(kind, job, limits, request_id)
        except SandboxUnavailable as exc:  # recorded like a crash, so it is retried
            logger.error("%s", exc)
            error = {"ErrorType": EXIT_ERROR, "ErrorMessage": str(exc)}
            return SandboxRun(None, SandboxFailure(InvocationOutcome.CRASH, error), 0, None)


class Invoker:
    """One worker thread's invoker. Not thread-safe: one per worker thread."""

    def __init__(self, worker: str | None = None, runner: HandlerRunner | None = None) -> None:
        self.worker = worker or default_worker_name()
        self.runner: HandlerRunner = runner or SandboxRunner()
        # One long-lived thread for this worker's database work (claims, lease renewal,
        # outcomes), so the lease renewer and the worker share one connection.
        self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="durable-db")

    def close(self) -> None:
        self._db_thread.submit(connections.close_all).result()
        self._db_thread.shutdown(wait=True)

    def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self._db_thread.submit(fn, *args, **kwargs).result()

    def run_execution(self, execution_id: int) -> int:
        """Run invocations of the execution while one is due now; return how many ran."""
        count = 0
        while True:
            invocation = self._db(services.invocation_begin, execution_id, worker=self.worker)
            if invocation is None:
                return count
            self._run_once(invocation)
            count += 1

    def _run_once(self, invocation: InvocationInput) -> None:
        limits = self._db(limits_for_version, invocation.function_id, invocation.function_version)
        renewer = _LeaseRenewer(self, invocation)
        renewer.start()
        try:
            run = self.runner.run_durable(invocation, limits)
        finally:
            renewer.stop()
        result = run.result if isinstance(run.result, DurableResult) else DurableResult()
        self._db(
            services.invocation_finish,
            invocation.execution_id,
            invocation.invocation,
            output=result.output,
            raised=run.failure.error if run.failure else result.raised,
            outcome=run.failure.outcome if run.failure else None,
            sandbox_pid=run.pid or None,
            memory_used_mb=run.memory_used_mb,
        )

    def run_plain_invoke(self, execution_id: int, operation_id: str) -> None:
        """Call a plain (non-durable) chained-invoke target once and record its outcome."""
        op = self._db(services.plain_invoke_claim, execution_id, operation_id)
        if op is None:
            return
        result = self._call_plain(op)
        self._db(
            services.plain_invoke_complete,
            execution_id,
            operation_id,
            result=result.result,
            error=result.error,
        )

    def _call_plain(self, op: Operation) -> PlainResult:
        try:
            call, limits = self._db(
                plain_call_for, op.invoke_function_name, op.input_payload, op.invoke_tenant_id
            )
        except ServiceError as exc:  # the target is gone: the caller's error
            return PlainResult(error={"ErrorType": exc.code, "ErrorMessage": exc.message})
        return plain_result(self.runner.run_plain(call, limits))


def plain_call_for(reference: str, payload: str | None, tenant_id: str) -> tuple[PlainCall, FunctionLimits]:
    """The call of a plain function's current version, and its limits."""
    function = function_resolve(reference)[0]
    call = PlainCall(
        handler=function.handler,
        function_name=function.name,
        function_version=function.version,
        function_arn=function_arn(function),
        payload=payload,
        tenant_id=tenant_id,
    )
    return call, limits_for_version(function.pk, function.version)


def plain_result(run: SandboxRun) -> PlainResult:
    """A plain call's outcome; a sandbox failure is the call's error."""
    if run.failure is not None:
        return PlainResult(error=run.failure.error)
    return (
        run.result
        if isinstance(run.result, PlainResult)
        else PlainResult(error={"ErrorMessage": "no result"})
    )


class _LeaseRenewer:
    """Extends the lease every third of its length while the handler runs."""

    def __init__(self, invoker: Invoker, invocation: InvocationInput) -> None:
        self._invoker = invoker
        self._invocation = invocation
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="durable-lease")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        interval = settings.DURABLE_LEASE_SECONDS / 3
        while not self._stopped.wait(interval):
            try:
                renewed = self._invoker._db(
                    services.lease_renew,
                    self._invocation.execution_id,
                    self._invocation.invocation,
                    self._invoker.worker,
                )
            except Exception:  # the database is away for a moment: try again next interval
                logger.warning("lease renewal for %s failed", self._invocation.arn, exc_info=True)
                continue
            if not renewed:
                logger.warning("lease lost for %s", self._invocation.arn)
                return
