"""A sandbox child: runs the jobs its supervisor sends, one at a time, until its socket closes.

Started by ``executions.workers.sandbox.SandboxChild`` as
``python -m executions.workers.sandbox_child FD PARENT_PID``. Each job runs
with its function's environment variables set and an address-space ceiling; a
``MemoryError`` anywhere in the job (the ceiling reached) ends the child the
way Lambda ends a sandbox that ran out of memory, instead of letting the SDK
record it as an ordinary handler error.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import sys
from collections.abc import Iterator, Mapping
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from executions.engine.functions import FunctionLimits
    from executions.workers.runtime import DurableResult, HandlerRuntime, PlainResult

PR_SET_PDEATHSIG = 1
# Address space a job may add beyond its MemorySize before allocations fail: thread
# stacks (8 MB each, reserved not used) and malloc arenas count against the ceiling
# too, and the resident-memory check in the supervisor is the real limit.
ADDRESS_SPACE_HEADROOM_MB = 2048
MB = 1024 * 1024
OOM_EXIT_STATUS = 137


def main(argv: list[str]) -> None:
    conn = Connection(int(argv[1]))
    _die_with_parent(int(argv[2]))
    # Ctrl-C in a terminal reaches the whole process group; the supervisor decides
    # when children stop (it closes their sockets).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _setup_django(conn.recv())
    # Imported only now: these modules need Django configured.
    from executions.workers.runtime import HandlerRuntime, tune_sdk

    tune_sdk()
    runtime = HandlerRuntime(client_factory=lambda shared: _memory_guarded_client(shared, conn))
    conn.send(("ready", os.getpid()))
    try:
        _serve(conn, runtime)
    finally:
        runtime.close()


def _die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to kill this process when the supervisor goes (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # it went before the request took effect
        os._exit(0)


def _setup_django(config: dict[str, Any]) -> None:
    import django
    from django.conf import settings

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "durable_console.settings")
    for alias, name in config["database_names"].items():
        settings.DATABASES[alias]["NAME"] = name
    django.setup()


def _serve(conn: Connection, runtime: HandlerRuntime) -> None:
    from django.conf import settings

    from executions import log_context

    while True:
        try:
            kind, job, limits, changed_settings, log = conn.recv()
        except (EOFError, OSError):
            return  # the supervisor closed the socket or went away
        for name, value in (changed_settings or {}).items():
            setattr(settings, name, value)
        # Process-wide: the SDK logs and checkpoints from threads of its own (executions.log_context).
        with log_context.invocation(log, process_wide=True):
            result = _run_job(runtime, kind, job, limits)
        if _is_memory_error_result(result):
            _out_of_memory(conn)
        conn.send(("done", result))


def _run_job(
    runtime: HandlerRuntime, kind: str, job: Any, limits: FunctionLimits
) -> DurableResult | PlainResult:
    # Imported after django.setup() (main), like every project module here.
    from executions.live import updates as live_updates

    _check_connections(runtime)
    with function_environment(limits.environment_variables), address_space_ceiling(limits.memory_mb):
        if kind != "durable":
            return runtime.run_plain(job, limits)
        result = runtime.run_durable(job, limits)
    # The supervising worker records the outcome next and announces the execution then:
    # an invocation shorter than the live debounce window sends no message of its own.
    live_updates.withdraw(job.execution_id)
    return result


def _check_connections(runtime: HandlerRuntime) -> None:
    """A job may come long after the last one, and the database may have restarted in
    between: have Django check both database threads' connections (CONN_HEALTH_CHECKS)
    before the job's first query, as it does at the start of a request."""
    # Imported after django.setup() (main), like every project module here.
    from executions.workers import handler_db

    runtime.check_connection()
    handler_db.check_connection()


@contextlib.contextmanager
def function_environment(variables: Mapping[str, str]) -> Iterator[None]:
    """The function's environment variables in ``os.environ`` for this job only."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def address_space_ceiling(memory_mb: int) -> Iterator[None]:
    """A ceiling on what the job can reserve, so one allocation cannot take the host."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    ceiling = _address_space_bytes() + (memory_mb + ADDRESS_SPACE_HEADROOM_MB) * MB
    if hard != resource.RLIM_INFINITY:
        ceiling = min(ceiling, hard)
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _address_space_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _is_memory_error(error: Any) -> bool:
    if isinstance(error, dict):
        return error.get("ErrorType") == "MemoryError"
    return getattr(error, "type", None) == "MemoryError"


def _is_memory_error_result(result: DurableResult | PlainResult) -> bool:
    output = getattr(result, "output", None)
    errors = [getattr(result, "raised", None), getattr(result, "error", None)]
    if isinstance(output, dict):
        errors.append(output.get("Error"))
    return any(_is_memory_error(error) for error in errors)


def _out_of_memory(conn: Connection) -> NoReturn:
    with contextlib.suppress(OSError):
        conn.send(("oom", None))
    os._exit(OOM_EXIT_STATUS)


def _memory_guarded_client(shared: Any, conn: Connection) -> Any:
    """The database client, refusing to checkpoint a MemoryError as a step failure.

    On Lambda a sandbox out of memory dies before it can record anything; a step
    that caught the MemoryError here would otherwise be retried as a handler bug.
    """
    # Imported after django.setup() (main), like every project module here.
    from executions.workers.client import DatabaseServiceClient

    class MemoryGuardedClient(DatabaseServiceClient):
        def checkpoint(
            self, durable_execution_arn: str, checkpoint_token: str, updates: Any, client_token: Any
        ) -> Any:
            if any(_is_memory_error(update.error) for update in updates):
                _out_of_memory(conn)
            return super().checkpoint(durable_execution_arn, checkpoint_token, updates, client_token)

    return MemoryGuardedClient(shared)


if __name__ == "__main__":
    main(sys.argv)
