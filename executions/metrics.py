"""Prometheus metrics: what they are, where they are recorded, and ``/metrics`` (docs/operations.md).

The engine imports nothing from here. The layers around it record:

- executions started and finished, timer lateness: engine observers
  (``engine/observers.py``) registered by ``install`` at startup;
- checkpoints (duration, operations by type and action): the SDK's database client
  (``workers/client.py``) and the API's checkpoint view;
- invocations (outcome, duration) and how busy the worker threads are: the sandbox
  supervisor (``workers/sandbox.py``), where each handler run returns;
- API requests by operation and status: ``api/views.py``;
- due-work age and open callbacks: read from the database when ``/metrics`` is scraped.

prometheus-client's multiprocess mode: each process (web, worker, its sandbox children,
scheduler, a CLI that starts an execution) writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` (settings point it at ``var/prometheus`` unless it is
set), and ``/metrics`` in any web process adds up every process of the host. The
metrics are created on first use, so a process that records nothing writes no file
(and does not even import prometheus-client: CLI commands start faster).
``DURABLE_METRICS=0`` records nothing and answers ``/metrics`` with 404.
"""

from __future__ import annotations

import datetime
import functools
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Min, Q
from django.http import Http404, HttpRequest, HttpResponse

from executions.engine import clock, observers
from executions.models import Execution, ExecutionStatus, Operation
from executions.vocabulary import ACTIVE_EXECUTION_STATUSES, OperationStatus, OperationType

logger = logging.getLogger(__name__)

ENABLED = settings.DURABLE_METRICS
# A checkpoint is a millisecond or a few; a slow one is a database in trouble.
CHECKPOINT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
INVOCATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
API_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60)
# The scheduler ticks every 0.5 s: most timers fire within a tick of their time.
LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)
# Open callbacks whose timeout is nearer than this count as expiring soon.
EXPIRING_SOON = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class Metrics:
    executions_started: Any
    executions_finished: Any
    checkpoint_duration: Any
    checkpoint_operations: Any
    invocations: Any
    invocation_duration: Any
    timer_lateness: Any
    worker_threads: Any
    worker_busy_threads: Any
    worker_busy_seconds: Any
    api_requests: Any
    api_request_duration: Any


@functools.cache
def metrics() -> Metrics:
    from prometheus_client import Counter, Gauge, Histogram

    return Metrics(
        executions_started=Counter(
            "durable_executions_started", "Executions started (chained durable invokes too)", ["function"]
        ),
        executions_finished=Counter(
            "durable_executions_finished",
            "Executions that reached a terminal status (again after a redrive)",
            ["function", "status"],
        ),
        checkpoint_duration=Histogram(
            "durable_checkpoint_duration_seconds",
            "Time to apply one checkpoint (the SDK's client in a sandbox, or the API)",
            ["via"],
            buckets=CHECKPOINT_BUCKETS,
        ),
        checkpoint_operations=Counter(
            "durable_checkpoint_operations",
            "Operation updates applied by checkpoints",
            ["type", "action"],
        ),
        invocations=Counter(
            "durable_invocations", "Handler runs in sandboxes, by how they ended", ["function", "outcome"]
        ),
        invocation_duration=Histogram(
            "durable_invocation_duration_seconds",
            "Wall time of one handler run in its sandbox",
            ["function"],
            buckets=INVOCATION_BUCKETS,
        ),
        timer_lateness=Histogram(
            "durable_timer_lateness_seconds",
            "How long after their time waits ended, retries became ready and callbacks timed out",
            buckets=LATENESS_BUCKETS,
        ),
        worker_threads=Gauge(
            "durable_worker_threads",
            "Worker threads that run handlers, in live processes",
            multiprocess_mode="livesum",
        ),
        worker_busy_threads=Gauge(
            "durable_worker_busy_threads",
            "Worker threads running a handler right now",
            multiprocess_mode="livesum",
        ),
        worker_busy_seconds=Counter(
            "durable_worker_busy_seconds", "Thread-seconds worker threads spent running handlers"
        ),
        api_requests=Counter(
            "durable_api_requests",
            "Lambda API requests by operation and HTTP status",
            ["operation", "status"],
        ),
        api_request_duration=Histogram(
            "durable_api_request_duration_seconds",
            "Lambda API request latency by operation",
            ["operation"],
            buckets=API_BUCKETS,
        ),
    )


# --- recording -----------------------------------------------------------------------------


def function_of(arn: str) -> str:
    """The function's name in an execution ARN (``arn:aws:lambda:REGION:ACCOUNT:function:NAME:...``)."""
    parts = arn.split(":", 7)
    return parts[6] if len(parts) > 6 else ""


def execution_started(arn: str) -> None:
    metrics().executions_started.labels(function_of(arn)).inc()


def execution_finished(arn: str, status: str, *_: object) -> None:
    metrics().executions_finished.labels(function_of(arn), status).inc()


def timer_fired(lateness_seconds: float) -> None:
    metrics().timer_lateness.observe(max(0.0, lateness_seconds))


class CheckpointRecorder:
    """Records checkpoints made one way (``via``), with label children resolved once:
    a checkpoint costs an observation and one increment per update, no label lookups."""

    def __init__(self, via: str) -> None:
        self.via = via
        self._duration: Any = None
        self._operations: dict[tuple[str, str], Any] = {}

    def record(self, seconds: float, updates: Iterable[dict[str, Any]]) -> None:
        if not ENABLED:
            return
        if self._duration is None:
            self._duration = metrics().checkpoint_duration.labels(self.via)
        self._duration.observe(seconds)
        for update in updates:
            key = (str(update.get("Type")), str(update.get("Action")))
            counter = self._operations.get(key)
            if counter is None:
                counter = self._operations[key] = metrics().checkpoint_operations.labels(*key)
            counter.inc()


def invocation_done(function: str, outcome: str, seconds: float) -> None:
    if not ENABLED:
        return
    m = metrics()
    m.invocations.labels(function, outcome).inc()
    m.invocation_duration.labels(function).observe(seconds)


_worker_threads = 0


def declare_worker_threads(count: int) -> None:
    """This process runs handlers on ``count`` worker threads (a worker, or the embedded pool).

    Only such processes count busy threads: a web process's API invokes use sandboxes too,
    but no worker thread.
    """
    global _worker_threads
    _worker_threads = count
    if ENABLED:
        metrics().worker_threads.set(count)


@contextmanager
def worker_busy() -> Iterator[None]:
    """Around one handler run on a worker thread."""
    if not ENABLED or not _worker_threads:
        yield
        return
    m = metrics()
    m.worker_busy_threads.inc()
    began = time.monotonic()
    try:
        yield
    finally:
        m.worker_busy_threads.dec()
        m.worker_busy_seconds.inc(time.monotonic() - began)


def api_request(operation: str, status: int, seconds: float) -> None:
    if not ENABLED:
        return
    m = metrics()
    m.api_requests.labels(operation, str(status)).inc()
    m.api_request_duration.labels(operation).observe(seconds)


def install() -> None:
    """Listen to the engine (``ExecutionsConfig.ready``)."""
    if ENABLED:
        observers.add(started=execution_started, finished=execution_finished, timer_fired=timer_fired)


# --- /metrics --------------------------------------------------------------------------------


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Every process of this host, plus what the database says now; no login (docs/operations.md)."""
    if not settings.DURABLE_METRICS:
        raise Http404("metrics are switched off (DURABLE_METRICS=0)")
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(HostCollector())
    registry.register(DatabaseCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def serve_host(port: int, host: str = "0.0.0.0") -> Any:
    """This host's processes' metrics on a port of their own, for hosts that run no web process
    (``durable metrics-server``). The database's gauges are left to ``/metrics``: they are the
    same wherever they are read."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(HostCollector())
    return start_http_server(port, addr=host, registry=registry)


LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


def forget_dead_processes() -> None:
    """Drop the "live" gauges of processes that are gone (a killed worker's busy threads).

    Counters and histograms of dead processes stay: what they counted happened.
    """
    from prometheus_client import multiprocess

    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    for name in os.listdir(path) if path else ():
        found = LIVE_GAUGE_FILE.match(name)
        if found and not _alive(int(found.group(1))):
            multiprocess.mark_process_dead(int(found.group(1)), path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class HostCollector:
    """The multiprocess files, plus the busy ratio worked out from two of them."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client import multiprocess
        from prometheus_client.core import GaugeMetricFamily

        forget_dead_processes()
        threads = busy = 0.0
        for family in multiprocess.MultiProcessCollector(None).collect():
            yield family
            if family.name == "durable_worker_threads":
                threads = sum(sample.value for sample in family.samples)
            elif family.name == "durable_worker_busy_threads":
                busy = sum(sample.value for sample in family.samples)
        yield GaugeMetricFamily(
            "durable_worker_busy_ratio",
            "Share of this host's worker threads running a handler now (0 without workers)",
            value=min(1.0, busy / threads) if threads else 0.0,
        )


class DatabaseCollector:
    """Gauges read from the database at scrape time, one indexed query each.

    A database that does not answer leaves them out and says so in ``durable_database_up``:
    the processes' own metrics are still worth a scrape then, more than ever.
    """

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            found = list(self._gauges(GaugeMetricFamily))
        except DatabaseError:
            logger.warning("metrics: the database did not answer", exc_info=True)
            found = []
        answered = int(bool(found))
        yield GaugeMetricFamily(
            "durable_database_up", "Whether the database answered this scrape's queries", value=answered
        )
        yield from found

    def _gauges(self, GaugeMetricFamily: Any) -> Iterator[Any]:
        now = clock.now()
        due = GaugeMetricFamily(
            "durable_due_work_oldest_age_seconds",
            "How late the oldest due work is: a timer not yet fired, an invocation not yet started",
            labels=["kind"],
        )
        for kind, oldest in (("timer", _oldest_due_timer(now)), ("invocation", _oldest_due_invocation(now))):
            due.add_metric([kind], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
        yield due
        open_count, expiring = _open_callbacks(now)
        yield GaugeMetricFamily("durable_open_callbacks", "Callbacks waiting for an answer", value=open_count)
        yield GaugeMetricFamily(
            "durable_open_callbacks_expiring_soon",
            f"Open callbacks that time out within {EXPIRING_SOON.total_seconds():.0f} s",
            value=expiring,
        )


def _oldest_due_timer(now: datetime.datetime) -> datetime.datetime | None:
    due = Execution.objects.filter(wake_at__lte=now, status__in=ACTIVE_EXECUTION_STATUSES)
    oldest: datetime.datetime | None = due.aggregate(oldest=Min("wake_at"))["oldest"]
    return oldest


def _oldest_due_invocation(now: datetime.datetime) -> datetime.datetime | None:
    """What the scheduler would hint: due, running, and no live lease (one in flight is not late)."""
    due = Execution.objects.filter(
        needs_invocation=True, status=ExecutionStatus.RUNNING, invocation_due_at__lte=now
    ).filter(Q(lease_owner="") | Q(lease_expires_at__lt=now))
    oldest: datetime.datetime | None = due.aggregate(oldest=Min("invocation_due_at"))["oldest"]
    return oldest


def _open_callbacks(now: datetime.datetime) -> tuple[int, int]:
    open_callbacks = Operation.objects.filter(type=OperationType.CALLBACK, status=OperationStatus.STARTED)
    soon = now + EXPIRING_SOON
    expiring = Q(callback_timeout_at__lte=soon) | Q(callback_heartbeat_at__lte=soon)
    counts = open_callbacks.aggregate(total=Count("id"), expiring=Count("id", filter=expiring))
    return counts["total"], counts["expiring"]
