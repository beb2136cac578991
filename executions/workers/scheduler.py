"""The scheduler loop: fires due timers, and hints the workers about due work nobody took.

Safe to run several: due executions are claimed with ``SKIP LOCKED`` on
PostgreSQL (plain row locks on SQLite, where writers are serialized anyway),
and every service it calls is idempotent. Its queries, like the services,
retry transient database errors (``executions.engine.db_retry``).

- A tick, every ``DURABLE_SCHEDULER_INTERVAL_SECONDS`` (0.5), does everything
  below. Between ticks the loop wakes only to fire timers, when the earliest
  ``wake_at`` comes due (``TIMER_PAUSE_SECONDS`` after the last pass at the
  soonest): polling one indexed column, not ``LISTEN/NOTIFY``, which would need a
  connection of its own and PostgreSQL, and would fire nothing sooner.
- Timers fire in batches (``timers.timers_fire_batch``: up to ``BATCH``
  executions per transaction, a few statements a batch), batch after batch
  until none is due. Their wake-up hints go out after commit like any other
  (``engine/effects.py``): no more than it takes to wake idle workers, who then
  claim due work from the database themselves (``Invoker.drain``).
- Hints are sent for due work nobody took only while no message waits in the
  queue: a waiting message means every worker is busy, and each one claims due
  work before it takes another message, so another hint would wake nobody (the
  re-sends that left 13,000-16,000 stale hints queued after a 5,000-timer run).
  With the queue empty, the work's hint was lost (a broker restart) or never
  sent (a retry's delay just passed): it gets one, re-sent with backoff
  (``_hint_again``).
- It also takes over invocations whose lease expired, fails plain calls whose
  worker died, resumes stale bulk jobs and purges executions past retention.
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
from executions.vocabulary import ACTIVE_EXECUTION_STATUSES, OperationStatus, OperationType

logger = logging.getLogger(__name__)

BATCH = 200
# Timer batches per tick at most, so the other duties of a tick still come round.
MAX_TIMER_BATCHES = 50
# The shortest pause between two passes over due timers, however soon the next one is due:
# timers coming due one after another are fired a few at a time, at most this late.
TIMER_PAUSE_SECONDS = 0.1
PURGE_EVERY_SECONDS = 60.0
# The first re-send of a hint nobody acted on; later ones back off (see _hint_again).
REDISPATCH_AFTER = datetime.timedelta(seconds=5)


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
    expired = Execution.objects.filter(lease_expires_at__lt=now, status__in=ACTIVE_EXECUTION_STATUSES)
    return list(expired.values_list("pk", flat=True)[:BATCH])


def _fire_timers(now: datetime.datetime) -> int:
    """Fire due timers a batch at a time until none is due (or locked by someone else)."""
    fired = 0
    for _ in range(MAX_TIMER_BATCHES):
        looked_at, fired_now = services.timers_fire_batch(max(now, clock.now()), BATCH)
        fired += fired_now
        if looked_at < BATCH:
            break
    return fired


def _recover_plain_invokes(now: datetime.datetime) -> int:
    """Fail plain calls whose worker died after claiming them (see services.plain_invoke_recover)."""
    return sum(services.plain_invoke_recover(pk, op_id) for pk, op_id in _expired_plain_claims(now))


@retry_transient
def _expired_plain_claims(now: datetime.datetime) -> list[tuple[int, str]]:
    # Matches the partial index operation_invoke_claim_idx: only calls in flight are in it.
    expired = Operation.objects.filter(
        type=OperationType.CHAINED_INVOKE,
        status=OperationStatus.STARTED,
        invoke_claim_expires_at__lte=now,
        execution__status__in=ACTIVE_EXECUTION_STATUSES,
    )
    return list(expired.values_list("execution_id", "operation_id")[:BATCH])


def _dispatch_due_invocations(now: datetime.datetime) -> int:
    waiting = dispatch.waiting()
    if waiting:  # busy workers will claim the work: see the module docstring
        return 0
    # With the queue known to be empty, the hints a send would top it up with (effects.py).
    return _hint_due_invocations(now, BATCH if waiting is None else dispatch.HINT_BACKLOG)


@retry_transient
def _hint_due_invocations(now: datetime.datetime, limit: int) -> int:
    with transaction.atomic():
        due = list(
            Execution.objects.select_for_update(skip_locked=True)
            .filter(needs_invocation=True, status=ExecutionStatus.RUNNING, invocation_due_at__lte=now)
            .filter(Q(lease_owner="") | Q(lease_expires_at__lt=now))
            .filter(Q(dispatched_at__isnull=True) | _hint_again("dispatched_at", "invocation_due_at", now))
            .order_by("invocation_due_at")
            .values_list("pk", flat=True)[:limit]
        )
        if due:
            services.invocation_mark_dispatched(due)
            dispatch.after_commit(dispatch.Wake(pk) for pk in due)
    return len(due)


def _dispatch_plain_invokes(now: datetime.datetime) -> int:
    """Hint again the plain calls no worker claimed: at most one hint per call per backoff step."""
    pending = _pending_plain_invokes(now)
    dispatch.send(dispatch.PlainInvoke(execution_id, op_id) for execution_id, op_id in pending)
    return len(pending)


@retry_transient
def _pending_plain_invokes(now: datetime.datetime) -> list[tuple[int, str]]:
    # The checkpoint that started the call sent the first hint (at started_at).
    first_hint_lost = Q(invoke_dispatched_at__isnull=True, started_at__lte=now - REDISPATCH_AFTER)
    with transaction.atomic():
        pending = list(
            Operation.objects.select_for_update(skip_locked=True)
            .filter(invoke_dispatch_pending=True, status=OperationStatus.STARTED)
            .filter(first_hint_lost | _hint_again("invoke_dispatched_at", "started_at", now))
            .values_list("pk", "execution_id", "operation_id")[:BATCH]
        )
        Operation.objects.filter(pk__in=[pk for pk, *_ in pending]).update(invoke_dispatched_at=now)
    return [(execution_id, op_id) for _, execution_id, op_id in pending]


def run_forever(stop: threading.Event, interval: float | None = None) -> None:
    """Tick every ``interval``, and fire timers as they come due in between, until ``stop`` is set.

    A failing pass is logged and retried.
    """
    interval = interval or settings.DURABLE_SCHEDULER_INTERVAL_SECONDS
    next_tick = next_purge = 0.0
    while not stop.is_set():
        # The database may have restarted since the last pass: check the connection
        # before relying on it (CONN_HEALTH_CHECKS), as Django does for a request.
        close_old_connections()
        pause = interval
        try:
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + interval
                tick()
            else:
                _fire_timers(clock.now())
            if time.monotonic() >= next_purge:
                services.executions_purge_expired()
                next_purge = time.monotonic() + PURGE_EVERY_SECONDS
            pause = _pause_before_next_pass(next_tick - time.monotonic())
        except Exception:
            logger.exception("scheduler tick failed")
            close_old_connections()
        stop.wait(pause)
    close_old_connections()


def _pause_before_next_pass(until_tick: float) -> float:
    """Until the next tick, or the next timer if it comes due sooner (``TIMER_PAUSE_SECONDS`` at least)."""
    next_wake_at = services.timers_next_due()
    if next_wake_at is not None:
        until_timer = (next_wake_at - clock.now()).total_seconds()
        until_tick = min(until_tick, max(TIMER_PAUSE_SECONDS, until_timer))
    return max(0.0, until_tick)
