"""Celery tasks: thin wake-up hints. The database says what actually runs."""

from __future__ import annotations

from celery import shared_task

from executions.invoker import Invoker

_invoker: Invoker | None = None


def _process_invoker() -> Invoker:
    global _invoker
    if _invoker is None:
        _invoker = Invoker()
    return _invoker


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_execution(execution_id: int) -> int:
    """Run every invocation of the execution that is due now (idempotent)."""
    return _process_invoker().run_execution(execution_id)


@shared_task(acks_late=True, ignore_result=True)
def run_plain_invoke(execution_id: int, operation_id: str) -> None:
    """Call a plain chained-invoke target once; the claim makes repeats no-ops."""
    _process_invoker().run_plain_invoke(execution_id, operation_id)
