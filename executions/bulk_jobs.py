"""Bulk stop and redrive: a job row, run in the background, one audited action per execution.

The job's targets are fixed at creation. A runner claims the job (compare-and-set
on its status and heartbeat) and works through the targets in chunks; each chunk
is one transaction holding the job row: the chunk's stops or redrives, their audit
entries and the job's counters commit together. So a runner killed mid-job has
done exactly what ``processed`` says, and whoever resumes goes on from there:
nothing is done twice and nothing is skipped.

Runners are started the way wake-up hints are sent (``executions.engine.effects``): a
Celery task when workers run elsewhere, a thread in embedded mode. The scheduler
re-dispatches a job whose runner went quiet (``bulk_jobs_redispatch_stale``), so a
worker crash or a lost message only delays a job by ``DURABLE_BULK_STALE_SECONDS``.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from functools import partial

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Q

from executions import audit, operator
from executions.audit import Actor
from executions.engine import clock
from executions.engine import effects as dispatch
from executions.engine.db_retry import retry_transient
from executions.engine.errors import ResourceConflict, ResourceNotFound, ServiceError
from executions.models import AuditChannel, BulkJob, BulkJobStatus, Execution
from executions.vocabulary import ExecutionAction, statuses_allowing

logger = logging.getLogger(__name__)

# Statuses each bulk action can act on; the console narrows its filter scope to them.
# The statuses each bulk action applies to (executions/vocabulary.py's table).
ELIGIBLE: dict[str, tuple[str, ...]] = {
    action: statuses_allowing(action) for action in (ExecutionAction.STOP, ExecutionAction.REDRIVE)
}
# Targets per transaction: the progress a crash can cost, and how often the heartbeat beats.
CHUNK = 20
REDISPATCH_BATCH = 50

Outcome = tuple[str, str]


def stale_after() -> datetime.timedelta:
    """A RUNNING job whose heartbeat is older than this lost its runner."""
    return datetime.timedelta(seconds=settings.DURABLE_BULK_STALE_SECONDS)


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
        now = clock.now()
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
            created_at=now,
            dispatched_at=now,
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
    """Start a runner: a Celery task when workers run elsewhere, else a thread right here."""
    if (broker := dispatch.broker()) is not None:
        try:
            broker.submit_bulk_job(job_id)
        except Exception:  # the scheduler sends it again once the job looks stale
            logger.warning("bulk job %s not dispatched", job_id, exc_info=True)
        return
    threading.Thread(target=_run_and_close, args=(job_id,), name=f"bulk-job-{job_id}", daemon=True).start()


def _run_and_close(job_id: int) -> None:
    try:
        bulk_job_run(job_id)
    except Exception:
        logger.exception("bulk job %s failed", job_id)
    finally:
        connections.close_all()  # this thread's connection, which no one else will close


# --- running a job ---------------------------------------------------------------------------


def bulk_job_run(job_id: int) -> BulkJob | None:
    """Claim the job and act on each remaining target; None if another runner has it.

    Returns the job as this runner left it: DONE, FAILED, or still RUNNING when
    another runner took it over meanwhile (this one went quiet for too long).
    """
    runner = _runner_name()
    job = _claim(job_id, runner)
    if job is None:
        return None
    if job.runs > 1:
        logger.warning("bulk job %s resumed by %s at %d/%d", job.pk, runner, job.processed, job.total)
    try:
        while job.processed < job.total:
            if not _run_chunk(job, runner):
                logger.warning("bulk job %s was taken over by another runner; %s stops", job.pk, runner)
                return job
        _finish(job, runner, BulkJobStatus.DONE)
    except Exception as exc:
        logger.exception("bulk job %s stopped", job.pk)
        _finish(job, runner, BulkJobStatus.FAILED, error=str(exc)[:2000])
    return job


def _runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@retry_transient
def _claim(job_id: int, runner: str) -> BulkJob | None:
    """Compare-and-set: a pending job, or a running one whose runner went quiet (crashed)."""
    now = clock.now()
    stale = Q(status=BulkJobStatus.RUNNING, heartbeat_at__lt=now - stale_after())
    with transaction.atomic():
        claimable = BulkJob.objects.filter(Q(status=BulkJobStatus.PENDING) | stale, pk=job_id)
        job = claimable.select_for_update().first()
        if job is None:
            return None
        job.status, job.claimed_by, job.heartbeat_at = BulkJobStatus.RUNNING, runner, now
        job.started_at = job.started_at or now
        job.runs += 1
        job.save(update_fields=["status", "claimed_by", "heartbeat_at", "started_at", "runs"])
    return job


@retry_transient
def _run_chunk(job: BulkJob, runner: str) -> bool:
    """The next targets, their actions and the counters in one transaction; False if taken over."""
    with transaction.atomic():
        current = BulkJob.objects.select_for_update().filter(pk=job.pk, claimed_by=runner).first()
        if current is None or current.status != BulkJobStatus.RUNNING:
            return False
        _sync_counters(job, current)  # a retried chunk starts again from what was committed
        act = _ACTIONS[job.action]
        actor = Actor(AuditChannel.CONSOLE, job.created_by_name or "console", job.created_by)
        chunk = job.target_ids[job.processed : job.processed + CHUNK]
        found = Execution.objects.only("pk", "arn", "status").in_bulk(chunk)
        problems_before = len(job.problems)
        for pk in chunk:
            execution = found.get(pk)
            _count(job, pk, execution, *act(actor, execution, job))
        job.heartbeat_at = clock.now()
        fields = ["processed", "succeeded", "skipped", "failed", "heartbeat_at"]
        if len(job.problems) != problems_before:
            fields.append("problems")
        job.save(update_fields=fields)
    return True


def _sync_counters(job: BulkJob, current: BulkJob) -> None:
    for field in ("processed", "succeeded", "skipped", "failed", "problems"):
        setattr(job, field, getattr(current, field))


def _count(job: BulkJob, pk: int, execution: Execution | None, outcome: str, message: str) -> None:
    job.processed += 1
    setattr(job, outcome, getattr(job, outcome) + 1)
    if outcome != "succeeded":
        arn = execution.arn if execution else ""
        job.problems = [*job.problems, {"id": pk, "arn": arn, "outcome": outcome, "message": message}]


@retry_transient
def _finish(job: BulkJob, runner: str, status: str, error: str = "") -> None:
    job.status, job.error, job.finished_at = status, error, clock.now()
    BulkJob.objects.filter(pk=job.pk, claimed_by=runner).update(
        status=status, error=error, finished_at=job.finished_at, heartbeat_at=job.finished_at
    )


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
    if execution.status not in ELIGIBLE[ExecutionAction.STOP]:
        return "skipped", f"already {execution.status}"
    return _guarded(lambda: operator.stop(actor, execution, job.reason))


def _redrive(actor: Actor, execution: Execution | None, job: BulkJob) -> Outcome:
    if execution is None:
        return "skipped", "execution was deleted"
    if execution.status not in ELIGIBLE[ExecutionAction.REDRIVE]:
        return "skipped", f"{execution.status}: only FAILED or TIMED_OUT executions can be redriven"
    accept = job.rerun_interrupted
    return _guarded(lambda: operator.redrive(actor, execution, job.reason, rerun_interrupted=accept))


_ACTIONS: dict[str, Callable[[Actor, Execution | None, BulkJob], Outcome]] = {
    "stop": _stop,
    "redrive": _redrive,
}


# --- the scheduler's pass ----------------------------------------------------------------------


def bulk_jobs_redispatch_stale(now: datetime.datetime) -> int:
    """Start a runner again for each job nobody is running: how many were sent.

    A RUNNING job whose heartbeat is older than ``DURABLE_BULK_STALE_SECONDS`` lost
    its runner (a killed worker); a PENDING one that old lost its message. Each is
    sent again at most once per that interval, however long it stays stale.
    """
    job_ids = _stale_job_ids(now)
    for job_id in job_ids:
        logger.warning("bulk job %s has no live runner; dispatching it again", job_id)
        bulk_job_dispatch(job_id)
    return len(job_ids)


@retry_transient
def _stale_job_ids(now: datetime.datetime) -> list[int]:
    quiet_since = now - stale_after()
    with transaction.atomic():
        # A runner holds its job's row while it works on a chunk: SKIP LOCKED passes over it.
        stale = (
            BulkJob.objects.select_for_update(skip_locked=True)
            .filter(
                Q(status=BulkJobStatus.RUNNING, heartbeat_at__lt=quiet_since)
                | Q(status=BulkJobStatus.PENDING, created_at__lt=quiet_since)
            )
            .filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=quiet_since))
        )
        job_ids = list(stale.values_list("pk", flat=True)[:REDISPATCH_BATCH])
        BulkJob.objects.filter(pk__in=job_ids).update(dispatched_at=now)
    return job_ids
