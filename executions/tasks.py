"""Celery tasks: thin wake-up hints. The database says what actually runs.

Every task ends with a drain (``Invoker.drain``): its thread claims due invocations
from the database until none is left before it takes another message. That is
what lets the engine send no hint while messages are already waiting
(``engine/effects.py``): whichever message a worker takes next, the work is found.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import shared_task, signals

from executions import bulk_jobs
from executions.workers.invoker import Invoker

# One invoker per worker thread: the prefork and solo pools have one thread per
# process, the threads pool several, and an Invoker is not thread-safe.
_local = threading.local()
# Set when this worker process shuts down: drains stop claiming, so running tasks end soon.
_stopping = threading.Event()


@signals.worker_shutting_down.connect(weak=False)
def _stop_draining(**_: Any) -> None:
    _stopping.set()


@signals.worker_init.connect(weak=False)
def _start_draining(**_: Any) -> None:
    _stopping.clear()  # durable_console.celery restarts a worker that exited on its own


def _thread_invoker() -> Invoker:
    invoker = getattr(_local, "invoker", None)
    if invoker is None:
        invoker = _local.invoker = Invoker()
    return invoker


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_execution(execution_id: int) -> int:
    """Run every invocation of the execution that is due now, then drain (idempotent)."""
    invoker = _thread_invoker()
    return invoker.run_execution(execution_id) + invoker.drain(_stopping.is_set)


@shared_task(acks_late=True, ignore_result=True)
def run_plain_invoke(execution_id: int, operation_id: str) -> None:
    """Call a plain chained-invoke target once (the claim makes repeats no-ops), then drain."""
    invoker = _thread_invoker()
    invoker.run_plain_invoke(execution_id, operation_id)
    invoker.drain(_stopping.is_set)


@shared_task(acks_late=True, ignore_result=True)
def run_bulk_job(job_id: int) -> None:
    """Run a bulk stop/redrive (its claim makes a repeated message resume it, not repeat it), then drain."""
    bulk_jobs.bulk_job_run(job_id)
    _thread_invoker().drain(_stopping.is_set)
