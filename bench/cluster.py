"""The production configuration the README recommends, as separate processes, for the benchmarks.

``worker_processes`` x ``python manage.py durable worker --pool threads --concurrency N`` (each
thread supervises one sandbox child that runs the handler) and one ``durable scheduler``, all
with the bench's environment (``DATABASE_URL``, ``CELERY_BROKER_URL``...). Also CPU time read
from /proc and the broker's counters read from Redis itself.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
STEPS_FUNCTION = "bench-steps"
WARM_UP_SECONDS = 120.0
# kombu's Redis transport publishes a task message with one LPUSH on the queue's key
# (kombu.transport.redis.Channel._put); the default queue is "celery".
QUEUE_KEY = "celery"


@dataclass
class Cluster:
    workers: list[subprocess.Popen[bytes]]
    scheduler: subprocess.Popen[bytes]
    log_dir: Path

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [*self.workers, self.scheduler]


@contextlib.contextmanager
def running_cluster(workers: int, threads: int, log_dir: Path) -> Iterator[Cluster]:
    """An empty broker, then workers and a scheduler, warmed up; stopped on the way out."""
    flush_broker()
    cluster = start_cluster(workers, threads, log_dir)
    try:
        warm_up(cluster, threads)
        yield cluster
    finally:
        stop_cluster(cluster)


def start_cluster(workers: int, threads: int, log_dir: Path) -> Cluster:
    log_dir.mkdir(parents=True, exist_ok=True)
    manage = [sys.executable, str(REPO / "manage.py"), "durable"]
    worker = [*manage, "worker", "--pool", "threads", "--concurrency", str(threads)]
    return Cluster(
        workers=[_spawn(worker, log_dir / f"worker-{n}.log") for n in range(workers)],
        scheduler=_spawn([*manage, "scheduler"], log_dir / "scheduler.log"),
        log_dir=log_dir,
    )


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )


def stop_cluster(cluster: Cluster) -> None:
    """SIGTERM (Celery's warm shutdown), then SIGKILL after 30 s; sandbox children die with them."""
    for process in cluster.processes:
        process.terminate()
    for process in cluster.processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def warm_up(cluster: Cluster, threads: int) -> None:
    """Batches of 1-step executions until every worker process has run one.

    Process start-up (Django, Celery, the first sandbox child) is not what the benchmarks
    measure, and a worker still starting would leave the other one all the work.
    """
    from executions import services
    from executions.models import Invocation

    wanted = {process.pid for process in cluster.workers}
    deadline = time.monotonic() + WARM_UP_SECONDS
    seen: set[int] = set()
    while seen != wanted:
        ids = [
            services.execution_start(function=STEPS_FUNCTION, input_payload='{"steps": 1}').execution.pk
            for _ in range(len(cluster.workers) * threads)
        ]
        wait_until_ended(ids, deadline, "the warm-up executions", cluster)
        names = Invocation.objects.filter(execution_id__in=ids).values_list("worker", flat=True)
        seen |= {int(name.split(":")[1]) for name in names} & wanted


def wait_until_ended(ids: list[int], deadline: float, what: str, cluster: Cluster | None = None) -> None:
    """Poll until every execution in ``ids`` has ended; TimeoutError at the deadline."""
    from executions.models import Execution

    def ended() -> bool:
        return not Execution.objects.filter(pk__in=ids, ended_at__isnull=True).exists()

    if not poll(ended, deadline, cluster):
        raise TimeoutError(f"{what} did not end before the deadline")


def poll(
    condition: Callable[[], bool], deadline: float, cluster: Cluster | None = None, interval: float = 0.05
) -> bool:
    """Wait for ``condition``; False at the deadline. A cluster process that exits is an error."""
    while not condition():
        if cluster is not None:
            _check_alive(cluster)
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def _check_alive(cluster: Cluster) -> None:
    for process in cluster.processes:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with code {process.returncode}")


def log_tails(log_dir: Path, lines: int = 15) -> str:
    """The last lines of every log in ``log_dir``, for an error report."""
    parts = []
    for log in sorted(log_dir.glob("*.log")):
        text = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {log.name}\n" + "\n".join(text))
    return "\n".join(parts)


# --- the broker -------------------------------------------------------------------------------


def _redis() -> Any:
    import redis

    return redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])


def flush_broker() -> None:
    """Drop every queued message, so a phase does not start with hints meant for an earlier one.

    The bench process's own starts publish hints while no worker runs (the per-step runs
    invoke in-process); nothing else lives in this throwaway Redis between phases.
    """
    _redis().flushdb()


def lpush_calls() -> int:
    """LPUSH commands Redis has executed since it started (INFO commandstats)."""
    stats = _redis().info("commandstats")
    return int(stats.get("cmdstat_lpush", {}).get("calls", 0))


def queued_messages() -> int:
    """Messages still waiting in the Celery queue."""
    return int(_redis().llen(QUEUE_KEY))


# --- CPU from /proc ---------------------------------------------------------------------------


def process_table() -> tuple[dict[int, float], dict[int, list[int]]]:
    """Every live process's CPU seconds so far (user + system, /proc) and its children by parent."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu: dict[int, float] = {}
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
        children.setdefault(int(fields[1]), []).append(int(entry))
    return cpu, children


def descendants(pids: list[int], children: dict[int, list[int]]) -> list[int]:
    """``pids`` and every live process below them."""
    found, stack = [], list(pids)
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds so far (user + system) of these processes and their live descendants.

    A process that ended meanwhile takes its CPU with it, so callers clamp deltas at zero.
    """
    cpu, children = process_table()
    return sum(cpu.get(pid, 0.0) for pid in descendants(pids, children))


STARTER_THREADS = 4


def start_executions(function: str, payload: str, count: int, threads: int = STARTER_THREADS) -> list[int]:
    """Start ``count`` executions from ``threads`` threads at once; their ids, in start order.

    Several starters, as several clients (API requests, web processes) start executions in
    production, and as the DBOS peer's threads call their workflow: one thread starting
    one execution after another measured the starter, not the engine (its start rate
    capped the throughput of a repetition). Each thread closes its own connection.
    """
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    from executions import services

    def start_share(share: int) -> list[tuple[float, int]]:
        try:
            started = []
            for _ in range(share):
                pk = services.execution_start(function=function, input_payload=payload).execution.pk
                started.append((time.monotonic(), pk))
            return started
        finally:
            connections.close_all()

    shares = [count // threads + (1 if index < count % threads else 0) for index in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        started = [item for part in pool.map(start_share, shares) for item in part]
    return [pk for _, pk in sorted(started)]
