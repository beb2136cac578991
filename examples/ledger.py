"""Reading and writing the side-effect ledger, on one thread per process.

Service calls run inside steps, on the SDK's short-lived threads; every query
here goes through :mod:`executions.workers.handler_db`, the one long-lived thread per
process that handler code uses for the database (it explains why).

Call :func:`close` when the database is about to go away (test teardown, worker
shutdown) so that thread's connection does not hold it open.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from examples.models import LedgerEntry
from executions.workers.handler_db import close, run

__all__ = ["add_attempt", "attempts", "close", "count", "data", "disabled_fault_points", "record", "run"]


# --- queries ------------------------------------------------------------------------


def _create(service: str, action: str, key: str, data: dict[str, Any]) -> None:
    LedgerEntry.objects.create(service=service, action=action, key=key, data=data)


def _count(service: str, action: str, key: str | None) -> int:
    rows = LedgerEntry.objects.filter(service=service, action=action)
    return (rows.filter(key=key) if key is not None else rows).count()


def _attempt(service: str, key: str) -> int:
    # One transaction, so a "locked" retry never records the attempt twice.
    with transaction.atomic():
        _create(service, LedgerEntry.ATTEMPT, key, {})
        return _count(service, LedgerEntry.ATTEMPT, key)


def _data(service: str, action: str, key: str) -> list[dict[str, Any]]:
    rows = LedgerEntry.objects.filter(service=service, action=action, key=key)
    return list(rows.values_list("data", flat=True))


def _disabled_points() -> set[str]:
    from examples.models import FaultSwitch

    return set(FaultSwitch.objects.filter(disabled=True).values_list("point", flat=True))


def disabled_fault_points() -> set[str]:
    """Fault points an operator switched off (their planned faults are not injected)."""
    return run(_disabled_points)


def record(service: str, action: str, key: str, **data: Any) -> None:
    """Append one effect to the ledger."""
    run(_create, service, action, key, data)


def count(service: str, action: str, key: str | None = None) -> int:
    """How many times ``service.action`` happened (for ``key``, if given)."""
    return run(_count, service, action, key)


def data(service: str, action: str, key: str) -> list[dict[str, Any]]:
    """The data of every ``service.action`` entry for ``key``, oldest first."""
    return run(_data, service, action, key)


def attempts(point: str, key: str) -> int:
    """How many calls were made at fault point ``point`` (e.g. "payment.charge") for ``key``."""
    return count(point.split(".", 1)[0], LedgerEntry.ATTEMPT, f"{point}:{key}")


def add_attempt(point: str, key: str) -> int:
    """Record one more call at ``point`` for ``key``; returns its number (1-based)."""
    return run(_attempt, point.split(".", 1)[0], f"{point}:{key}")
