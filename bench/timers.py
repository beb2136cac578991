"""Timers at scale: many executions waiting at once, then resuming, on the production configuration.

``count`` executions of ``bench.handlers:timer`` (``context.wait(Duration.from_seconds(s))``,
then one step whose body returns ``time.time()``) are started by ``starters`` threads of the
bench process (one by default: one after another, as the issue's own baseline was measured)
while ``workers`` x ``durable worker --pool threads --concurrency threads`` + one
``durable scheduler`` run (bench.cluster, warmed up first). The phase ends when every one has
ended, or at a deadline (``deadline_seconds`` after the last start, plus the wait); whatever has
not ended by then is reported, not waited for.

The start rate matters: started faster than the workers run first invocations (several
starter threads), the workers fall behind, and 30 s later the resumptions come due at the
rate the first invocations ran; a resumption costs a little more (a step and closing the
execution), so they queue behind each other and lateness grows through the wave whatever the
timer machinery does. ``--timer-starters 4`` measures that overload.

Measured, from the engine's own rows once the phase ends:

- lateness (due -> handler resumed) = the ``resumed`` step's returned time.time() (taken in the
  sandbox child when the resumed handler ran the step's body) - the WAIT operation's
  ``scheduled_end_at``; p50 / p99 / max in seconds. ``fire_lateness`` = the WAIT operation's
  ``ended_at`` (when the engine fired the timer) - ``scheduled_end_at``.
- ``lost``: executions not SUCCEEDED at the end of the phase.
- ``doubled``: executions whose step ran more than once: its ``attempt`` above 1, or more
  than one StepStarted or StepSucceeded history event for it.
- ``messages_per_invocation``: Celery task messages published during the phase / the
  invocations needed (2 per execution: the first, and the one resumed after the wait).
  kombu's Redis transport publishes each task message with one LPUSH on the queue's key
  (kombu.transport.redis.Channel._put), so messages = the increase of ``cmdstat_lpush``
  calls in Redis's ``INFO commandstats`` between the first start and the end of the phase.
  Nothing else in this Redis uses LPUSH during the phase (channels-redis uses sorted sets;
  workers already started, so no start-up replies). ``invocations`` counts Invocation rows.
- CPU seconds over the phase of the scheduler process and of the workers with their sandbox
  children (/proc), and the Celery messages still queued when the phase ends.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import cluster

TIMER_FUNCTION = "bench-timer"


def register() -> None:
    from executions.engine.functions import function_register

    function_register(name=TIMER_FUNCTION, handler="bench.handlers:timer", execution_timeout=24 * 3600)


def timer_phase(
    count: int,
    seconds: int,
    deadline_seconds: float,
    workers: int,
    threads: int,
    log_dir: Path,
    starters: int = 1,
) -> dict[str, Any]:
    """Start ``count`` waiting executions and follow them to the end or the deadline."""
    with cluster.running_cluster(workers, threads, log_dir) as running:
        lpush, cpu = cluster.lpush_calls(), _phase_cpu(running)
        began = time.monotonic()
        ids = _start(count, seconds, starters)
        started_in = time.monotonic() - began
        deadline = time.monotonic() + seconds + deadline_seconds
        finished = cluster.poll(lambda: _unfinished(ids) == 0, deadline, running, interval=1.0)
        phase = {
            "count": count,
            "timer_seconds": seconds,
            "starters": starters,
            "started_in_s": round(started_in, 1),
            "phase_s": round(time.monotonic() - began, 1),
            "all_ended_before_deadline": finished,
            "messages": cluster.lpush_calls() - lpush,
            "queued_after": cluster.queued_messages(),
            **_cpu_used(running, cpu),
        }
    return {**phase, **_outcome(ids, phase["messages"])}


def _start(count: int, seconds: int, starters: int) -> list[int]:
    return cluster.start_executions(TIMER_FUNCTION, json.dumps({"seconds": seconds}), count, starters)


def _unfinished(ids: list[int]) -> int:
    from executions.models import Execution

    return Execution.objects.filter(pk__in=ids, ended_at__isnull=True).count()


def _phase_cpu(running: cluster.Cluster) -> dict[str, float]:
    return {
        "scheduler": cluster.cpu_seconds([running.scheduler.pid]),
        "workers": cluster.cpu_seconds([worker.pid for worker in running.workers]),
    }


def _cpu_used(running: cluster.Cluster, before: dict[str, float]) -> dict[str, float]:
    after = _phase_cpu(running)
    return {f"{name}_cpu_s": round(max(0.0, after[name] - before[name]), 1) for name in before}


def _outcome(ids: list[int], messages: int) -> dict[str, Any]:
    """Lateness, lost, doubled and messages per needed invocation, from the engine's rows."""
    from executions.models import Execution, Invocation

    statuses = Counter(Execution.objects.filter(pk__in=ids).values_list("status", flat=True))
    resumed, fired = _lateness(ids)
    invocations = Invocation.objects.filter(execution_id__in=ids).count()
    return {
        "statuses": dict(statuses),
        "lost": len(ids) - statuses.get("SUCCEEDED", 0),
        "doubled": _doubled(ids),
        "resumed": len(resumed),
        **_quantiles("lateness", resumed),
        **_quantiles("fire_lateness", fired),
        "invocations": invocations,
        "needed_invocations": 2 * len(ids),
        "messages_per_invocation": messages / (2 * len(ids)),
    }


def _lateness(ids: list[int]) -> tuple[list[float], list[float]]:
    """(resumed - due) for every execution that resumed, (fired - due) for every fired timer."""
    from executions.models import Operation

    ops = Operation.objects.filter(execution_id__in=ids, type__in=("WAIT", "STEP"))
    due: dict[int, float] = {}
    fired: list[float] = []
    resumed_at: dict[int, float] = {}
    for execution_id, kind, scheduled_end, ended, result in ops.values_list(
        "execution_id", "type", "scheduled_end_at", "ended_at", "result"
    ):
        if kind == "WAIT" and scheduled_end is not None:
            due[execution_id] = scheduled_end.timestamp()
            if ended is not None:
                fired.append((ended - scheduled_end).total_seconds())
        elif kind == "STEP" and result:
            resumed_at[execution_id] = float(json.loads(result))
    return [at - due[pk] for pk, at in resumed_at.items() if pk in due], fired


def _doubled(ids: list[int]) -> int:
    """Executions whose step ran more than once (attempt > 1, or repeated start/success events)."""
    from executions.models import HistoryEvent, Operation

    step_events = ("StepStarted", "StepSucceeded")
    events = HistoryEvent.objects.filter(execution_id__in=ids, event_type__in=step_events)
    repeated = Counter(events.values_list("execution_id", "operation_id", "event_type"))
    doubled = {key[0] for key, times in repeated.items() if times > 1}
    retried = Operation.objects.filter(execution_id__in=ids, type="STEP", attempt__gt=1)
    doubled |= set(retried.values_list("execution_id", flat=True))
    return len(doubled)


def _quantiles(name: str, values: list[float]) -> dict[str, float | None]:
    if not values:
        return {f"{name}_{key}_s": None for key in ("min", "p50", "p99", "max")}
    ordered = sorted(values)
    return {
        f"{name}_min_s": round(ordered[0], 3),
        f"{name}_p50_s": round(statistics.median(ordered), 3),
        f"{name}_p99_s": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3),
        f"{name}_max_s": round(ordered[-1], 3),
    }
