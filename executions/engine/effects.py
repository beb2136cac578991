"""Wake-up hints sent after commit: to the embedded worker pool or to Celery.

A hint only says "look at this execution now". Losing one costs latency, not
work: the scheduler finds every due execution in the database anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

Effect = tuple[str, Any]


class WorkSink(Protocol):
    def submit_execution(self, execution_id: int) -> None: ...
    def submit_plain_invoke(self, execution_id: int, operation_id: str) -> None: ...


_local_sink: WorkSink | None = None


def set_local_sink(sink: WorkSink | None) -> None:
    """Route hints to an in-process worker pool (embedded mode and tests)."""
    global _local_sink
    _local_sink = sink


def is_embedded() -> bool:
    """Whether an in-process worker pool takes this process's work (embedded mode, tests)."""
    return _local_sink is not None


def can_hint() -> bool:
    """Whether this process delivers wake-up hints (else only the scheduler finds work)."""
    return _local_sink is not None or bool(settings.CELERY_BROKER_URL)


def after_commit(effects: Iterable[Effect]) -> None:
    pending = list(effects)
    if pending:
        transaction.on_commit(lambda: send(pending))


def send(effects: Iterable[Effect]) -> None:
    for kind, target in dict.fromkeys(effects):
        try:
            _send_one(kind, target)
        except Exception:  # a lost hint is recovered by the scheduler's next sweep
            logger.warning("wake-up hint %s %s not delivered", kind, target, exc_info=True)


def _send_one(kind: str, target: Any) -> None:
    if kind == "changed":
        from executions.live import updates as live

        live.notify(target)
        return
    if _local_sink is not None:
        if kind == "wake":
            _local_sink.submit_execution(target)
        elif kind == "plain_invoke":
            _local_sink.submit_plain_invoke(*target)
        return
    if not settings.CELERY_BROKER_URL:
        return
    from executions import tasks

    if kind == "wake":
        tasks.run_execution.delay(target)
    elif kind == "plain_invoke":
        tasks.run_plain_invoke.delay(*target)
