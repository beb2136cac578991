"""Celery tasks: thin wake-up hints. The database says what actually runs."""

from __future__ import annotations

import threading

from celery import shared_task

from executions import bulk_jobs
from executions.workers.invoker import Invoker

# One invoker per worker thread: the prefork and solo pools have one thread per
# process, the threads pool several, and an Invoker is not thread-safe.
_local = threading.local()


def _thread_invoker() -> Invoker:
    invoker = getattr(_local, "invoker", None)
    if invoker is None:
        invoker = _local.invoker = Invoker()
    return invoker


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_execution(execution_id: int) -> int:
    """Run every invocation of the execution that is due now (idempotent)."""
    return _thread_invoker().run_execution(execution_id)


@shared_task(acks_late=True, ignore_result=True)
def run_plain_invoke(execution_id: int, operation_id: str) -> None:
    """Call a plain chained-invoke target once; the claim makes repeats no-ops."""
    _thread_invoker().run_plain_invoke(execution_id, operation_id)


@shared_task(acks_late=True, ignore_result=True)
def run_bulk_job(job_id: int) -> None:
    """Run a bulk stop/redrive; the job's claim makes a repeated message resume it, not repeat it."""
    bulk_jobs.bulk_job_run(job_id)
