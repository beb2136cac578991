"""Which invocation a log line is about: execution ARN, invocation number, function, worker.

Set once per job, not per checkpoint or per log call: the worker thread that
supervises a job sets it around the job (``workers/sandbox.py``), and the sandbox
child sets it around the handler's run (``workers/sandbox_child.py``).
``InvocationFilter`` (on the console handler, ``settings.LOGGING``) copies it onto
each record that is logged, where the JSON formatter (``DURABLE_LOG_FORMAT=json``,
``durable_console/logs.py``) writes it; the text format leaves it out.

A worker process runs several jobs at once, one per thread, so there it is a
context variable. A sandbox child runs one job at a time, but the SDK logs and
checkpoints from threads of its own, which a context variable does not reach:
the child sets it process-wide instead.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

FIELDS = ("execution_arn", "invocation", "function", "worker")


@dataclass(frozen=True, slots=True)
class InvocationLog:
    """What a log line says about the job it was logged in; None where it does not apply."""

    execution_arn: str | None = None
    invocation: int | None = None
    function: str | None = None
    worker: str | None = None


_current: ContextVar[InvocationLog | None] = ContextVar("durable_invocation_log", default=None)
_process_wide: InvocationLog | None = None


def current() -> InvocationLog | None:
    return _current.get() or _process_wide


def worker_name() -> str:
    """The calling worker thread, as a worker names itself in leases (``host:pid:thread``)."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 100000}"


@contextmanager
def invocation(context: InvocationLog | None, *, process_wide: bool = False) -> Iterator[None]:
    """Log lines from this thread (``process_wide``: from every thread) carry ``context``."""
    global _process_wide
    if process_wide:
        previous, _process_wide = _process_wide, context
        try:
            yield
        finally:
            _process_wide = previous
        return
    token = _current.set(context)
    try:
        yield
    finally:
        _current.reset(token)


class InvocationFilter(logging.Filter):
    """Puts the current invocation's fields on each record (None outside an invocation)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = current()
        for name in FIELDS:
            setattr(record, name, getattr(context, name) if context is not None else None)
        return True
