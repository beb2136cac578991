"""Bulk stop and redrive: a job row, run in the background, one audited action per execution.

The job's targets are fixed at creation. ``bulk_job_run`` is the whole logic
and is idempotent enough to run again after a crash: it claims the job, goes on
from ``processed``, and every per-execution action is itself safe to repeat
(stopping a stopped execution is a no-op; redriving a running one is skipped).
It runs on a thread in embedded mode and as a Celery task in production,
mirroring how ``executions.dispatch`` routes wake-up hints.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Q

from executions import audit, clock, dispatch, operator
from executions.audit import Actor
from executions.errors import ResourceConflict, ResourceNotFound, ServiceError
from executions.models import AuditChannel, BulkJob, BulkJobStatus, Execution, ExecutionStatus

logger = logging.getLogger(__name__)

# Statuses each bulk action can act on; the filter scope is narrowed to them.
ELIGIBLE: dict[str, tuple[str, ...]] = {
    "stop": (ExecutionStatus.RUNNING, ExecutionStatus.PAUSED),
    "redrive": (ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT),
}
PROGRESS_EVERY = 20  # save counters every this many executions
STALE_AFTER = datetime.timedelta(seconds=60)  # a RUNNING job this quiet was interrupted
CHUNK = 200


def eligible_filters(filters: Any, action: str) -> Any:
    """The list filter narrowed to the statuses ``action`` applies to."""
    eligible = ELIGIBLE[action]
    wanted = tuple(s for s in filters.statuses if s in eligible) if filters.statuses else eligible
    # A filter on only ineligible statuses matches nothing; keep it impossible, not widened.
    return dataclasses.replace(filters, statuses=wanted or ("__none__",))


def filter_target_ids(filters: Any, action: str, limit: int) -> list[int]:
    """Ids of up to ``limit`` executions the filter matches that ``action`` applies to."""
    from executions.console_queries import execution_page

    narrowed = eligible_filters(filters, action)
    if narrowed.statuses == ("__none__",):
        return []
    ids: list[int] = []
    cursor: str | None = None
    while len(ids) < limit:
        page = execution_page(narrowed, cursor=cursor, limit=min(500, limit - len(ids)))
        ids += [row.pk for row in page.rows]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    return ids[:limit]


def bulk_job_create(
    actor: Actor,
    *,
    action: str,
    scope: str,
    target_ids: list[int],
    query: str = "",
    reason: str = "",
    rerun_interrupted: bool = False,
) -> BulkJob:
    """Record the job (audited) and start it after commit.

    ``rerun_interrupted`` (redrive only) is the operator's choice for every target:
    whether interrupted operations, which may have taken effect, run again.
    """
    if action not in ELIGIBLE:
        raise ValueError(f"unknown bulk action {action!r}")
    if rerun_interrupted and action != "redrive":
        raise ValueError("rerun_interrupted applies to a bulk redrive only")
    targets = list(dict.fromkeys(int(pk) for pk in target_ids))[: settings.DURABLE_BULK_MAX_EXECUTIONS]
    with transaction.atomic():
        job = BulkJob.objects.create(
            action=action,
            scope=scope,
            query=query,
            reason=reason,
            rerun_interrupted=rerun_interrupted,
            target_ids=targets,
            total=len(targets),
            created_by=actor.user,
            created_by_name=actor.name[:150],
            created_at=clock.now(),
        )
        audit.record(
            actor,
            f"bulk.{action}",
            f"bulk-job:{job.pk}",
            scope=scope,
            count=len(targets),
            query=query,
            reason=reason,
            **({"rerun_interrupted": rerun_interrupted} if action == "redrive" else {}),
        )
        transaction.on_commit(partial(bulk_job_dispatch, job.pk))
    return job


def bulk_job_dispatch(job_id: int) -> None:
    """Run the job: a Celery task when workers run elsewhere, else a thread right here."""
    if settings.CELERY_BROKER_URL and not dispatch.is_embedded():
        from executions import tasks

        tasks.run_bulk_job.delay(job_id)
        return
    threading.Thread(target=_run_and_close, args=(job_id,), name=f"bulk-job-{job_id}", daemon=True).start()


def _run_and_close(job_id: int) -> None:
    try:
        bulk_job_run(job_id)
    except Exception:
        logger.exception("bulk job %s failed", job_id)
    finally:
        connections.close_all()  # this thread's connection, which no one else will close


def bulk_job_run(job_id: int) -> BulkJob | None:
    """Claim the job and act on each remaining target; None if someone else runs it."""
    job = _claim(job_id)
    if job is None:
        return None
    try:
        act = _ACTIONS[job.action]
        actor = Actor(AuditChannel.CONSOLE, job.created_by_name or "console", job.created_by)
        for index, (pk, execution) in enumerate(_remaining_targets(job), start=1):
            outcome, message = act(actor, execution, job)
            _count(job, pk, execution, outcome, message)
            if index % PROGRESS_EVERY == 0:
                _save_progress(job)
        job.status = BulkJobStatus.DONE
    except Exception as exc:
        logger.exception("bulk job %s stopped", job.pk)
        job.status, job.error = BulkJobStatus.FAILED, str(exc)[:2000]
    job.finished_at = clock.now()
    _save_progress(job, "status", "finished_at", "error")
    return job


def _claim(job_id: int) -> BulkJob | None:
    """Compare-and-set: a pending job, or a running one whose runner went quiet (crashed)."""
    now = clock.now()
    stale = Q(status=BulkJobStatus.RUNNING, heartbeat_at__lt=now - STALE_AFTER)
    claimable = BulkJob.objects.filter(Q(status=BulkJobStatus.PENDING) | stale, pk=job_id)
    if not claimable.update(status=BulkJobStatus.RUNNING, started_at=now, heartbeat_at=now):
        return None
    return BulkJob.objects.select_related("created_by").get(pk=job_id)


def _remaining_targets(job: BulkJob) -> Iterator[tuple[int, Execution | None]]:
    remaining = job.target_ids[job.processed :]
    for start in range(0, len(remaining), CHUNK):
        chunk = remaining[start : start + CHUNK]
        found = Execution.objects.only("pk", "arn", "status").in_bulk(chunk)
        for pk in chunk:
            yield pk, found.get(pk)


def _count(job: BulkJob, pk: int, execution: Execution | None, outcome: str, message: str) -> None:
    job.processed += 1
    setattr(job, outcome, getattr(job, outcome) + 1)
    if outcome != "succeeded":
        arn = execution.arn if execution else ""
        job.problems = [*job.problems, {"id": pk, "arn": arn, "outcome": outcome, "message": message}]


def _save_progress(job: BulkJob, *extra: str) -> None:
    job.heartbeat_at = clock.now()
    fields = ["processed", "succeeded", "skipped", "failed", "problems", "heartbeat_at", *extra]
    job.save(update_fields=fields)


Outcome = tuple[str, str]


def _guarded(action: Callable[[], object]) -> Outcome:
    try:
        action()
    except (ResourceConflict, ResourceNotFound) as exc:  # changed under us: nothing to do
        return "skipped", exc.message
    except ServiceError as exc:
        return "failed", exc.message
    return "succeeded", ""


def _stop(actor: Actor, execution: Execution | None, job: BulkJob) -> Outcome:
    if execution is None:
        return "skipped", "execution was deleted"
    if execution.status not in ELIGIBLE["stop"]:
        return "skipped", f"already {execution.status}"
    return _guarded(lambda: operator.stop(actor, execution.arn, job.reason))


def _redrive(actor: Actor, execution: Execution | None, job: BulkJob) -> Outcome:
    if execution is None:
        return "skipped", "execution was deleted"
    if execution.status not in ELIGIBLE["redrive"]:
        return "skipped", f"{execution.status}: only FAILED or TIMED_OUT executions can be redriven"
    accept = job.rerun_interrupted
    return _guarded(lambda: operator.redrive(actor, execution.arn, job.reason, rerun_interrupted=accept))


_ACTIONS: dict[str, Callable[[Actor, Execution | None, BulkJob], Outcome]] = {
    "stop": _stop,
    "redrive": _redrive,
}
