"""The sandbox supervisor: handler code runs in child processes that this module owns.

Every handler run (a durable invocation, a plain chained-invoke target, a plain
function invoked through the API) is a job sent to a sandbox child
(``executions.workers.sandbox_child``) over a socket pair. The supervisor,
on the worker's own thread, waits for the reply with the function's limits:

- past the function's ``Timeout`` the child is killed: ``Sandbox.Timedout``;
- a child that exits or is killed by a signal is noticed at once (its end of
  the socket closes): ``Runtime.ExitError``;
- a child whose memory grows past ``MemorySize`` during the job is killed:
  ``Runtime.OutOfMemory`` (see ``_memory_exceeded``);
- a job whose caller sets its ``cancel`` event (the invoker's lease renewer,
  once the lease is gone) is killed at once: outcome ``LOST``.

A failed child is replaced at once (the replacement boots while the failure is
recorded). Children are reused across jobs, so an invocation costs a message
round trip, not an interpreter start. Nothing a handler does can stop the
supervisor: it only reads the socket with a deadline.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from django.conf import settings
from django.db import connections

from executions import log_context, metrics, tracing
from executions.engine.functions import FunctionLimits
from executions.log_context import InvocationLog
from executions.models import InvocationOutcome
from executions.workers.runtime import DurableResult, PlainResult

logger = logging.getLogger(__name__)

SANDBOX_TIMEOUT = "Sandbox.Timedout"
EXIT_ERROR = "Runtime.ExitError"
OUT_OF_MEMORY = "Runtime.OutOfMemory"

# How often the supervisor samples a busy child's memory while it waits for the reply.
MEMORY_SAMPLE_SECONDS = 0.02
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


class SandboxUnavailable(RuntimeError):
    """No sandbox child could be started (the worker cannot run handlers at all)."""


@dataclass(frozen=True)
class SandboxFailure:
    """A run that ended without a reply: the invocation's outcome and Lambda's error object."""

    outcome: InvocationOutcome
    error: dict[str, Any]


@dataclass(frozen=True)
class SandboxRun:
    """What one job in a sandbox gave: the handler's result, or how the sandbox failed."""

    result: DurableResult | PlainResult | None
    failure: SandboxFailure | None
    pid: int
    memory_used_mb: int | None


@functools.cache
def _durable_setting_names() -> tuple[str, ...]:
    # dir(settings) walks every setting; the names never change, only (in tests) the values.
    return tuple(name for name in dir(settings) if name.startswith("DURABLE_"))


def durable_settings() -> dict[str, Any]:
    """The engine's settings as this process sees them (tests override some), for the child."""
    return {name: getattr(settings, name) for name in _durable_setting_names()}


def _child_config() -> dict[str, Any]:
    """Sent once to a new child, as plain data (it unpickles before Django is set up):
    the live database names, not the settings module's. Under a test runner the
    database has been renamed (test_...), and the child must use the same one."""
    return {"database_names": {alias: connections[alias].settings_dict["NAME"] for alias in connections}}


def _child_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "durable_console.settings")
    # Two malloc arenas instead of eight per core: less address space per SDK thread,
    # so the child's address-space backstop (see sandbox_child) fits real use.
    env["MALLOC_ARENA_MAX"] = "2"
    base = str(settings.BASE_DIR)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [base, env.get("PYTHONPATH", "")]))
    return env


def rss_kb(pid: int) -> int | None:
    """The process's resident memory in KiB, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_KB
    except (OSError, IndexError, ValueError):
        return None


class SandboxChild:
    """One child process and the supervisor's end of its socket."""

    def __init__(self) -> None:
        parent_end, child_end = socket.socketpair()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "executions.workers.sandbox_child",
                str(child_end.fileno()),
                str(os.getpid()),
            ],
            pass_fds=(child_end.fileno(),),
            cwd=settings.BASE_DIR,
            env=_child_environment(),
            stdin=subprocess.DEVNULL,
        )
        child_end.close()
        self.pid = self.process.pid
        self.conn = Connection(parent_end.detach())
        self.conn.send(_child_config())
        self.ready = False
        self.usable = True
        self.started_rss_kb: int | None = None
        self._settings_sent: dict[str, Any] | None = None

    def run(
        self,
        kind: str,
        job: Any,
        limits: FunctionLimits,
        request_id: str,
        cancel: threading.Event | None = None,
        log: InvocationLog | None = None,
    ) -> SandboxRun:
        """Send one job and wait for its reply within the function's limits, or until ``cancel``.

        ``log`` is what the child's log lines say about the job (``executions.log_context``).
        """
        self._wait_ready(request_id)
        current = durable_settings()
        changed = current if current != self._settings_sent else None
        self._settings_sent = current
        baseline = rss_kb(self.pid) or 0
        self.conn.send((kind, job, limits, changed, log))
        return self._await_reply(limits, request_id, baseline, cancel)

    def _wait_ready(self, request_id: str) -> None:
        if self.ready:
            return
        deadline = time.monotonic() + settings.DURABLE_SANDBOX_START_SECONDS
        while time.monotonic() < deadline:
            try:
                if not self.conn.poll(0.1):
                    continue
                tag, *_ = self.conn.recv()
            except (EOFError, OSError):
                break
            if tag == "ready":
                self.ready = True
                self.started_rss_kb = rss_kb(self.pid)
                return
        self.kill()
        raise SandboxUnavailable(
            f"RequestId: {request_id} Error: sandbox process {self.pid} did not start "
            f"({self._exit_description()})"
        )

    def _await_reply(
        self, limits: FunctionLimits, request_id: str, baseline: int, cancel: threading.Event | None
    ) -> SandboxRun:
        started = time.monotonic()
        deadline = started + limits.timeout_seconds
        peak = baseline
        while True:
            if cancel is not None and cancel.is_set():
                self.kill()
                message = "Runtime exited with error: signal: killed (the invocation's lease was lost)"
                return self._failed(InvocationOutcome.LOST, EXIT_ERROR, request_id, message, peak, baseline)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                message = f"Task timed out after {limits.timeout_seconds:.2f} seconds"
                return self._failed(
                    InvocationOutcome.TIMEOUT, SANDBOX_TIMEOUT, request_id, message, peak, baseline
                )
            try:
                if self.conn.poll(min(remaining, MEMORY_SAMPLE_SECONDS)):
                    return self._reply(limits, request_id, peak, baseline)
            except (EOFError, OSError):
                return self._crashed(request_id, peak, baseline)
            rss = rss_kb(self.pid)
            if rss is None:
                continue  # exited: the next poll reads end-of-file
            peak = max(peak, rss)
            if _memory_exceeded(rss, baseline, limits):
                self.kill()
                return self._out_of_memory(request_id, limits, peak, baseline)

    def _reply(self, limits: FunctionLimits, request_id: str, peak: int, baseline: int) -> SandboxRun:
        try:
            tag, payload = self.conn.recv()
        except (EOFError, OSError):
            return self._crashed(request_id, peak, baseline)
        if tag == "oom":  # the handler hit the address-space backstop (MemoryError)
            self.kill()
            return self._out_of_memory(request_id, limits, peak, baseline)
        self._retire_if_bloated()
        return SandboxRun(payload, None, self.pid, _used_mb(peak, baseline))

    def _crashed(self, request_id: str, peak: int, baseline: int) -> SandboxRun:
        self.usable = False
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        message = f"Runtime exited with error: {self._exit_description()}"
        return self._failed(InvocationOutcome.CRASH, EXIT_ERROR, request_id, message, peak, baseline)

    def _out_of_memory(self, request_id: str, limits: FunctionLimits, peak: int, baseline: int) -> SandboxRun:
        message = (
            f"Runtime exited with error: signal: killed (memory used beyond MemorySize {limits.memory_mb} MB)"
        )
        return self._failed(InvocationOutcome.OOM, OUT_OF_MEMORY, request_id, message, peak, baseline)

    def _failed(
        self,
        outcome: InvocationOutcome,
        error_type: str,
        request_id: str,
        message: str,
        peak: int,
        baseline: int,
    ) -> SandboxRun:
        self.usable = False
        error = {"ErrorType": error_type, "ErrorMessage": f"RequestId: {request_id} Error: {message}"}
        logger.warning("sandbox %s: %s %s", self.pid, error_type, message)
        return SandboxRun(None, SandboxFailure(outcome, error), self.pid, _used_mb(peak, baseline))

    def _retire_if_bloated(self) -> None:
        # Memory a handler kept (caches, leaks) stays with the child: replace it rather
        # than let the next invocations start from a swollen baseline.
        rss = rss_kb(self.pid)
        if (
            rss
            and self.started_rss_kb
            and rss - self.started_rss_kb > settings.DURABLE_SANDBOX_RECYCLE_MB * 1024
        ):
            self.usable = False

    def _exit_description(self) -> str:
        code = self.process.poll()
        if code is None:
            return "still running"
        if code < 0:
            name = signal.Signals(-code).name.removeprefix("SIG").lower()
            return f"signal: {'killed' if name == 'kill' else name}"
        return f"exit status {code}"

    def kill(self) -> None:
        self.usable = False
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        with contextlib.suppress(OSError):
            self.conn.close()

    def close(self, grace: float = 2.0) -> None:
        """Ask the child to leave (it exits when its socket closes); kill it if it does not."""
        with contextlib.suppress(OSError):
            self.conn.close()
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()


def job_log(job: Any) -> InvocationLog:
    """What log lines about ``job`` say (a plain call has no execution ARN nor invocation number)."""
    return InvocationLog(
        execution_arn=getattr(job, "arn", None),
        invocation=getattr(job, "invocation", None),
        function=getattr(job, "function_name", None),
        worker=log_context.worker_name(),
    )


def run_outcome(run: SandboxRun) -> InvocationOutcome:
    """How a run ended, as ``invocation_finish`` will record it (for the invocations metric)."""
    if run.failure is not None:
        return run.failure.outcome
    result = run.result
    if isinstance(result, PlainResult):
        return InvocationOutcome.ERROR if result.error else InvocationOutcome.SUCCEEDED
    if result is None or result.raised is not None:
        return InvocationOutcome.ERROR
    status = result.output.get("Status") if isinstance(result.output, dict) else None
    return (
        InvocationOutcome(status)
        if status in ("SUCCEEDED", "FAILED", "PENDING")
        else InvocationOutcome.INVALID
    )


def _memory_exceeded(rss: int, baseline: int, limits: FunctionLimits) -> bool:
    """The limit counts what the job adds to the warm child's resident memory.

    A warm child (Python, Django, the SDK) is about 80 MB before any handler runs;
    counting that against 128 MB would leave a handler almost nothing, where
    Lambda's own runtime takes about 40 MB.
    """
    return rss - baseline > limits.memory_mb * 1024


def _used_mb(peak: int, baseline: int) -> int | None:
    return max(0, peak - baseline) // 1024 if baseline else None


class SandboxPool:
    """Sandbox children shared by the threads of one process; at most one job per child.

    Children start lazily (or ahead with ``warm``) and are kept while healthy. A
    thread that finds every child busy and the pool full waits for one.
    """

    def __init__(self, max_children: int) -> None:
        self.max_children = max_children
        self._idle: list[SandboxChild] = []
        self._count = 0
        self._closed = False
        self._cond = threading.Condition()
        # Children are started from one long-lived thread: the child asks the kernel to
        # kill it when the thread that started it ends (PR_SET_PDEATHSIG is per thread).
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="durable-sandbox-spawn")
        _all_pools.add(self)

    def warm(self, count: int) -> None:
        """Start up to ``count`` children now, so the first invocations find them booted."""
        with self._cond:
            wanted = min(count, self.max_children) - self._count
            self._count += max(0, wanted)
        for _ in range(max(0, wanted)):
            self._put_idle(self._spawn())

    def run(
        self,
        kind: str,
        job: Any,
        limits: FunctionLimits,
        request_id: str,
        cancel: threading.Event | None = None,
    ) -> SandboxRun:
        log = job_log(job)
        began, began_wall = time.monotonic(), time.time()
        outcome = InvocationOutcome.CRASH  # unless a run comes back: no child could be started
        try:
            with log_context.invocation(log), metrics.worker_busy(), self._child() as child:
                run = child.run(kind, job, limits, request_id, cancel, log)
            outcome = run_outcome(run)
            if run.failure is not None and log.execution_arn and log.invocation:
                # The sandbox was killed before it could send the invocation's span.
                tracing.failed_invocation(
                    log.execution_arn,
                    log.invocation,
                    log.function or "",
                    began_wall,
                    outcome,
                    run.failure.error,
                )
            return run
        finally:
            metrics.invocation_done(log.function or "", outcome, time.monotonic() - began)

    @contextlib.contextmanager
    def _child(self) -> Iterator[SandboxChild]:
        child = self._acquire()
        try:
            yield child
        finally:
            self._release(child)

    def _acquire(self) -> SandboxChild:
        with self._cond:
            while not self._idle and self._count >= self.max_children and not self._closed:
                self._cond.wait()
            if self._closed:
                raise SandboxUnavailable("the sandbox pool is shut down")
            if self._idle:
                return self._idle.pop()
            self._count += 1
        try:
            return self._spawn()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _release(self, child: SandboxChild) -> None:
        if child.usable and not self._closed:
            self._put_idle(child)
            return
        child.kill()
        if self._closed:
            with self._cond:
                self._count -= 1
            return
        try:
            self._put_idle(self._spawn())  # boots while the failure is being recorded
        except Exception:
            logger.exception("could not start a replacement sandbox")
            with self._cond:
                self._count -= 1
                self._cond.notify()

    def _put_idle(self, child: SandboxChild) -> None:
        with self._cond:
            self._idle.append(child)
            self._cond.notify()

    def _spawn(self) -> SandboxChild:
        return self._spawner.submit(SandboxChild).result()

    def child_pids(self) -> list[int]:
        """The idle children's process ids (for measurements)."""
        with self._cond:
            return [child.pid for child in self._idle]

    def close(self) -> None:
        """Stop every idle child; busy ones are killed when their job returns."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._cond.notify_all()
        for child in idle:
            child.close()
        self._spawner.shutdown(wait=False)


_all_pools: weakref.WeakSet[SandboxPool] = weakref.WeakSet()
_shared: SandboxPool | None = None
_shared_lock = threading.Lock()


def shared_pool() -> SandboxPool:
    """This process's sandbox pool (workers, embedded pool and API invokes share it)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SandboxPool(settings.DURABLE_SANDBOX_MAX_CHILDREN)
        return _shared


def close_shared_pool() -> None:
    global _shared
    with _shared_lock:
        pool, _shared = _shared, None
    if pool is not None:
        pool.close()


def _forget_after_fork() -> None:
    # A pool inherited through fork() (Celery's prefork pool) owns no child of this process.
    global _shared, _shared_lock
    _shared, _shared_lock = None, threading.Lock()
    _all_pools.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


@atexit.register
def _close_all_pools() -> None:
    for pool in list(_all_pools):
        with contextlib.suppress(Exception):
            pool.close()
