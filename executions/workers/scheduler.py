"""The scheduler loop: finds due work in the database and hints the workers.

Safe to run several: due executions are claimed with ``SKIP LOCKED`` on
PostgreSQL (plain row locks on SQLite, where writers are serialized anyway),
and every service it calls is idempotent. Its queries, like the services,
retry transient database errors (``executions.engine.db_retry``).
"""

from __future__ import annotations

import datetime
import logging
import threading
import time

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, Q, Value
from django.db.models.functions import Greatest, Least
from django.db.models.lookups import LessThanOrEqual

from executions import bulk_jobs, services
from executions.engine import clock
from executions.engine import effects as dispatch
from executions.engine.db_retry import retry_transient
from executions.models import Execution, ExecutionStatus, Operation

logger = logging.getLogger(__name__)

BATCH = 200
PURGE_EVERY_SECONDS = 60.0
# The first re-send of a hint nobody acted on; later ones back off (see _hint_again).
REDISPATCH_AFTER = datetime.timedelta(seconds=5)
ACTIVE = (ExecutionStatus.RUNNING, ExecutionStatus.PAUSED)


def tick() -> int:
    """One pass over due work; returns how many items it acted on."""
    now = clock.now()
    acted = _expire_leases(now) + _fire_timers(now) + _recover_plain_invokes(now)
    acted += _dispatch_due_invocations(clock.now())
    acted += _dispatch_plain_invokes(clock.now())
    acted += bulk_jobs.bulk_jobs_redispatch_stale(clock.now())
    return acted


def _hint_again(sent_at: str, waiting_since: str, now: datetime.datetime) -> LessThanOrEqual:
    """Work whose last hint (``sent_at``) is old enough to send another one.

    The pause after a hint is as long as the work had been waiting when it was
    sent (``sent_at - waiting_since``), at least ``REDISPATCH_AFTER`` and at most
    ``DURABLE_REDISPATCH_MAX_SECONDS`` (30): hints at 0, 5, 10, 20, 40, 70, 100 s...
    A hint lost with a restarted broker is replaced within seconds, while work that
    stays pending because no worker runs gets a few hints a minute, not one a tick.
    """
    cap = max(datetime.timedelta(seconds=settings.DURABLE_REDISPATCH_MAX_SECONDS), REDISPATCH_AFTER)
    waited = ExpressionWrapper(F(sent_at) - F(waiting_since), output_field=DurationField())
    pause = Greatest(
        Value(REDISPATCH_AFTER, output_field=DurationField()),
        Least(Value(cap, output_field=DurationField()), waited),
    )
    next_hint_at = ExpressionWrapper(F(sent_at) + pause, output_field=DateTimeField())
    return LessThanOrEqual(next_hint_at, Value(now, output_field=DateTimeField()))


def _expire_leases(now: datetime.datetime) -> int:
    return sum(services.invocation_expire(pk) for pk in _expired_lease_ids(now))


@retry_transient
def _expired_lease_ids(now: datetime.datetime) -> list[int]:
    expired = Execution.objects.filter(lease_expires_at__lt=now, status__in=ACTIVE)
    return list(expired.values_list("pk", flat=True)[:BATCH])


def _fire_timers(now: datetime.datetime) -> int:
    return sum(services.timers_fire_due(pk) for pk in _due_timer_ids(now))


@retry_transient
def _due_timer_ids(now: datetime.datetime) -> list[int]:
    due = Execution.objects.filter(wake_at__lte=now, status__in=ACTIVE)
    return list(due.values_list("pk", flat=True)[:BATCH])


def _recover_plain_invokes(now: datetime.datetime) -> int:
    """Fail plain calls whose worker died after claiming them (see services.plain_invoke_recover)."""
    return sum(services.plain_invoke_recover(pk, op_id) for pk, op_id in _expired_plain_claims(now))


@retry_transient
def _expired_plain_claims(now: datetime.datetime) -> list[tuple[int, str]]:
    # Matches the partial index operation_invoke_claim_idx: only calls in flight are in it.
    expired = Operation.objects.filter(
        type="CHAINED_INVOKE",
        status="STARTED",
        invoke_claim_expires_at__lte=now,
        execution__status__in=ACTIVE,
    )
    return list(expired.values_list("execution_id", "operation_id")[:BATCH])


@retry_transient
def _dispatch_due_invocations(now: datetime.datetime) -> int:
    with transaction.atomic():
        due = list(
            Execution.objects.select_for_update(skip_locked=True)
            .filter(needs_invocation=True, status=ExecutionStatus.RUNNING, invocation_due_at__lte=now)
            .filter(Q(lease_owner="") | Q(lease_expires_at__lt=now))
            .filter(Q(dispatched_at__isnull=True) | _hint_again("dispatched_at", "invocation_due_at", now))
            .values_list("pk", flat=True)[:BATCH]
        )
        if due:
            services.invocation_mark_dispatched(due)
            dispatch.after_commit(("wake", pk) for pk in due)
    return len(due)


def _dispatch_plain_invokes(now: datetime.datetime) -> int:
    """Hint again the plain calls no worker claimed: at most one hint per call per backoff step."""
    pending = _pending_plain_invokes(now)
    dispatch.send(("plain_invoke", (execution_id, op_id)) for execution_id, op_id in pending)
    return len(pending)


@retry_transient
def _pending_plain_invokes(now: datetime.datetime) -> list[tuple[int, str]]:
    # The checkpoint that started the call sent the first hint (at started_at).
    first_hint_lost = Q(invoke_dispatched_at__isnull=True, started_at__lte=now - REDISPATCH_AFTER)
    with transaction.atomic():
        pending = list(
            Operation.objects.select_for_update(skip_locked=True)
            .filter(invoke_dispatch_pending=True, status="STARTED")
            .filter(first_hint_lost | _hint_again("invoke_dispatched_at", "started_at", now))
            .values_list("pk", "execution_id", "operation_id")[:BATCH]
        )
        Operation.objects.filter(pk__in=[pk for pk, *_ in pending]).update(invoke_dispatched_at=now)
    return [(execution_id, op_id) for _, execution_id, op_id in pending]


def run_forever(stop: threading.Event, interval: float | None = None) -> None:
    """Tick until ``stop`` is set; a failing tick is logged and retried."""
    interval = interval or settings.DURABLE_SCHEDULER_INTERVAL_SECONDS
    next_purge = 0.0
    while not stop.is_set():
        # The database may have restarted since the last tick: check the connection
        # before relying on it (CONN_HEALTH_CHECKS), as Django does for a request.
        close_old_connections()
        try:
            tick()
            if time.monotonic() >= next_purge:
                services.executions_purge_expired()
                next_purge = time.monotonic() + PURGE_EVERY_SECONDS
        except Exception:
            logger.exception("scheduler tick failed")
            close_old_connections()
        stop.wait(interval)
    close_old_connections()
