"""A worker's invoker: claims invocations and has a runner execute the handler.

The invoker owns everything about an invocation except running the handler:
it claims it (lease + fresh token lineage), keeps the lease alive, and
records the outcome. The handler itself runs in a sandbox child
(``SandboxRunner``, what every worker uses), under its function's Timeout and
MemorySize; a timeout, crash or memory overrun is recorded as a failed
invocation and retried like a raised one. The invoker keeps going while the
execution needs another invocation right away, saving a dispatch round trip.

Its database work runs on one long-lived thread and survives a restarting
database: every call retries transient errors on a fresh connection
(``executions.engine.db_retry``), and each task starts with Django's connection check.
A handler whose lease cannot be kept is stopped (see ``_LeaseRenewer``), so a
takeover never runs the same step while it still runs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol, TypeVar

from django.conf import settings
from django.db import close_old_connections, connections

from executions import services
from executions.engine import db_retry
from executions.engine import effects as dispatch
from executions.engine.errors import ServiceError
from executions.engine.functions import FunctionLimits, function_arn, function_resolve, limits_for_version
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

    def run_durable(
        self, invocation: InvocationInput, limits: FunctionLimits, cancel: threading.Event | None = None
    ) -> SandboxRun:
        """Run the handler; once ``cancel`` is set, stop it and return a LOST failure."""
        ...

    def run_plain(
        self, call: PlainCall, limits: FunctionLimits, cancel: threading.Event | None = None
    ) -> SandboxRun:
        """Call the target; once ``cancel`` is set, stop it and return a LOST failure."""
        ...


class SandboxRunner:
    """Runs handlers in this process's sandbox children (``executions.workers.sandbox``)."""

    def __init__(self, pool: SandboxPool | None = None) -> None:
        self._pool = pool

    @property
    def pool(self) -> SandboxPool:
        return self._pool or shared_pool()

    def run_durable(
        self, invocation: InvocationInput, limits: FunctionLimits, cancel: threading.Event | None = None
    ) -> SandboxRun:
        return self._run("durable", invocation, limits, invocation.request_id, cancel)

    def run_plain(
        self, call: PlainCall, limits: FunctionLimits, cancel: threading.Event | None = None
    ) -> SandboxRun:
        return self._run("plain", call, limits, f"{call.function_name}:{call.function_version}", cancel)

    def _run(
        self,
        kind: str,
        job: Any,
        limits: FunctionLimits,
        request_id: str,
        cancel: threading.Event | None = None,
    ) -> SandboxRun:
        try:
            return self.pool.run(kind, job, limits, request_id, cancel)
        except SandboxUnavailable as exc:  # recorded like a crash, so it is retried
            logger.error("%s", exc)
            error = {"ErrorType": EXIT_ERROR, "ErrorMessage": str(exc)}
            return SandboxRun(None, SandboxFailure(InvocationOutcome.CRASH, error), 0, None)


class Invoker:
    """One worker thread's invoker. Not thread-safe: one per worker thread."""

    # How long one drain claims work before the worker looks at its messages again.
    DRAIN_SECONDS = 10.0

    def __init__(self, worker: str | None = None, runner: HandlerRunner | None = None) -> None:
        self.worker = worker or default_worker_name()
        self.runner: HandlerRunner = runner or SandboxRunner()
        # One long-lived thread for this worker's database work (claims, lease renewal,
        # outcomes), so the lease renewer and the worker share one connection.
        self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="durable-db")
        self._last_execution_id = 0  # what a drain that runs out of time names in its hint

    def close(self) -> None:
        self._db_thread.submit(connections.close_all).result()
        self._db_thread.shutdown(wait=True)

    def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn`` on this worker's database thread, transient errors retried (``db_retry.call``)."""
        return self._db_thread.submit(db_retry.call, fn, *args, **kwargs).result()

    def _check_connection(self) -> None:
        # A task may come long after the last one, and the database may have restarted
        # in between: check the connection first (CONN_HEALTH_CHECKS), as a request does.
        self._db(close_old_connections)

    def run_execution(self, execution_id: int) -> int:
        """Run invocations of the execution while one is due now; return how many ran."""
        self._check_connection()
        claimed_at = time.monotonic()  # the lease runs from a moment after this one
        invocation = self._db(services.invocation_begin, execution_id, worker=self.worker)
        return 0 if invocation is None else self._run_while_due(invocation, claimed_at)

    def drain(self, stop: Callable[[], bool] | None = None, max_seconds: float | None = None) -> int:
        """Claim and run due invocations of any execution until none is due; return how many ran.

        What a worker does after each message, before it takes the next one: one
        message then serves every execution that became due meanwhile, and work
        that became due while all workers were busy needs no message of its own
        (``engine/effects.py`` sends none then). Stops early when ``stop()`` says
        so (the worker is shutting down) or after ``max_seconds`` (default
        ``DRAIN_SECONDS``), so messages queued behind (plain calls, bulk jobs) wait
        no longer than that; a hint then goes out, so the rest is not left waiting.
        Its database calls retry transient errors like every other (``_db``), so it
        makes no connection check of its own: it follows a message's work.
        """
        deadline = time.monotonic() + (self.DRAIN_SECONDS if max_seconds is None else max_seconds)
        count = 0
        while not (stop and stop()):
            if time.monotonic() >= deadline:
                if self._last_execution_id:
                    dispatch.send([dispatch.Wake(self._last_execution_id)])
                break
            claimed_at = time.monotonic()
            invocation = self._db(services.invocation_claim_next, worker=self.worker)
            if invocation is None:
                break
            count += self._run_while_due(invocation, claimed_at)
        return count

    def _run_while_due(self, invocation: InvocationInput, claimed_at: float) -> int:
        """Run ``invocation``, then the execution's next ones while its finish says one is due."""
        count = 0
        while True:
            self._last_execution_id = invocation.execution_id
            due = self._run_once(invocation, claimed_at)
            count += 1
            if not due:
                return count
            claimed_at = time.monotonic()
            begun = self._db(services.invocation_begin, invocation.execution_id, worker=self.worker)
            if begun is None:
                return count
            invocation = begun

    def _run_once(self, invocation: InvocationInput, claimed_at: float) -> bool:
        """Run one invocation; whether the execution's next invocation is due at once."""
        limits = self._db(limits_for_version, invocation.function_id, invocation.function_version)
        lease = (services.lease_renew, invocation.execution_id, invocation.invocation, self.worker)
        with _LeaseRenewer(self, invocation.arn, claimed_at, *lease) as renewer:
            run = self.runner.run_durable(invocation, limits, cancel=renewer.lost)
        if run.failure is not None and run.failure.outcome == InvocationOutcome.LOST:
            # Stopped because the lease is gone: the takeover records this invocation
            # (LOST) and runs the next one; anything recorded here would race it.
            logger.warning(
                "invocation %s of %s stopped: its lease was lost", invocation.invocation, invocation.arn
            )
            return False
        result = run.result if isinstance(run.result, DurableResult) else DurableResult()
        return self._db(
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
        self._check_connection()
        claimed_at = time.monotonic()  # the claim runs from a moment after this one
        # Verified: a claim whose COMMIT answer was lost, run again, would find the call
        # claimed and never make it (it would fail at claim expiry as "may not have run").
        op = self._db(db_retry.call_verified, services.plain_invoke_claim, execution_id, operation_id)
        if op is None:
            return
        claim = (services.plain_invoke_renew, execution_id, operation_id)
        with _LeaseRenewer(self, op.invoke_function_name, claimed_at, *claim) as renewer:
            result = self._call_plain(op, renewer.lost)
        if renewer.lost.is_set():
            # The claim is gone (or about to be): the recovery records "may or may not have
            # run"; an outcome recorded here would race it.
            logger.warning("plain call of %s stopped: its claim was lost", op.invoke_function_name)
            return
        self._db(
            services.plain_invoke_complete,
            execution_id,
            operation_id,
            result=result.result,
            error=result.error,
        )

    def _call_plain(self, op: Operation, cancel: threading.Event) -> PlainResult:
        try:
            call, limits = self._db(
                plain_call_for, op.invoke_function_name, op.input_payload, op.invoke_tenant_id
            )
        except ServiceError as exc:  # the target is gone: the caller's error
            return PlainResult(error={"ErrorType": exc.code, "ErrorMessage": exc.message})
        return plain_result(self.runner.run_plain(call, limits, cancel))


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
    """Keeps a lease while a handler runs; stops the handler once it is gone.

    The lease is an invocation's (``services.lease_renew``) or a plain call's claim
    (``services.plain_invoke_renew``): ``renew(*args)`` extends it and says whether
    it is still this worker's.

    Renews every third of the lease. A renewal that fails (the database restarting,
    a lost connection, a server that does not answer) is tried again every
    ``RETRY_SECONDS`` on a fresh connection while the lease lasts. The renewer gives
    up when the lease is truly gone: a renewal finds it taken (the scheduler expired
    it), or no renewal went through before it would expire, after which the
    scheduler may take the execution over at any moment. Giving up sets ``lost``;
    the sandbox supervisor then kills the child running the handler, so the
    takeover's invocation never runs alongside this one.
    """

    RETRY_SECONDS = 0.2
    # Give up this share of the lease before it runs out: the kill takes a few
    # milliseconds, and the scheduler's clock may be a little ahead of this host's.
    SAFETY_SHARE = 0.1

    def __init__(
        self, invoker: Invoker, what: str, claimed_at: float, renew: Callable[..., bool], *args: Any
    ) -> None:
        self._invoker = invoker
        self._what = what  # named in the log
        self._renew_with, self._renew_args = renew, args
        self._lease = float(settings.DURABLE_LEASE_SECONDS)
        self._expires_at = claimed_at + self._lease  # monotonic; the real expiry is later
        self._pending: Future[bool] | None = None
        self._stopped = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="durable-lease")

    def __enter__(self) -> _LeaseRenewer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        pause = self._lease / 3
        while not self._stopped.wait(pause):
            tried_at = time.monotonic()
            renewed = self._renew(self._give_up_at() - tried_at)
            if renewed:
                self._expires_at = tried_at + self._lease
                pause = self._lease / 3
            elif renewed is False:
                self._give_up("lease lost (taken over)")
                return
            elif time.monotonic() >= self._give_up_at():
                self._give_up("lease not renewed before it expired")
                return
            else:
                pause = min(self.RETRY_SECONDS, max(0.0, self._give_up_at() - time.monotonic()))

    def _give_up_at(self) -> float:
        return self._expires_at - self._lease * self.SAFETY_SHARE

    def _renew(self, timeout: float) -> bool | None:
        """True renewed, False the lease is someone else's, None unknown (an error, or no answer in time)."""
        if self._pending is None or self._pending.done():  # else: still waiting on the last one
            self._pending = self._invoker._db_thread.submit(
                db_retry.attempt, self._renew_with, *self._renew_args
            )
        deadline = time.monotonic() + timeout
        while True:
            try:  # in slices, so a handler that ends meanwhile is not kept waiting for this answer
                return self._pending.result(timeout=max(0.0, min(0.1, deadline - time.monotonic())))
            except FutureTimeout:
                if self._stopped.is_set() or time.monotonic() >= deadline:
                    return None
            except Exception as exc:  # the database is away for a moment: try again shortly
                logger.warning("lease renewal for %s failed: %s", self._what, exc)
                return None

    def _give_up(self, why: str) -> None:
        logger.error("%s for %s: stopping its handler", why, self._what)
        self.lost.set()
