"""Where a 5-step execution's CPU goes, per process group, on the production configuration.

    .venv/bin/python -m bench.cpu_breakdown [--executions 400]

Starts a throwaway PostgreSQL (fsync on) and Redis, 2 x ``durable worker --pool threads
--concurrency 4`` and a scheduler (bench.cluster), starts N executions of the 5-step no-op
handler from 4 threads, and reads each group's CPU time from /proc (utime + stime, clock
ticks) before and after: the worker processes, their sandbox children, the scheduler, the
PostgreSQL server processes, Redis, and this process (the starting client). Prints CPU per
execution for each, executions/s, and how busy the 8 worker threads were (time inside
invocations / 8 x the window). A diagnostic beside ``make bench``, not part of it.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from bench import cluster
from bench.run import PG_SETTINGS, _setup_django
from tests.servers import start_postgres, start_redis


def _cpu(pids: list[int]) -> float:
    cpu, _children = cluster.process_table()
    return sum(cpu.get(pid, 0.0) for pid in pids)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=400)
    count = parser.parse_args().executions
    with start_postgres(fsync=True, settings=PG_SETTINGS) as pg, start_redis() as redis:
        _setup_django(pg.url, redis.url, pg.directory / "var")
        log_dir = Path(tempfile.mkdtemp(prefix="durable-cpu-breakdown-"))
        with cluster.running_cluster(2, 4, log_dir) as running:
            groups = _groups(running, _pid(pg.proc), _pid(redis.proc))
            before = {name: _cpu(pids) for name, pids in groups.items()}
            client = time.process_time()
            ids = cluster.start_executions(cluster.STEPS_FUNCTION, '{"steps": 5}', count)
            cluster.wait_until_ended(ids, time.monotonic() + 600, "the executions", running)
            client = time.process_time() - client
            groups = _groups(running, _pid(pg.proc), _pid(redis.proc))  # children replaced meanwhile
            used = {name: _cpu(pids) - before.get(name, 0.0) for name, pids in groups.items()}
        _report(ids, count, {**used, "starting client": client})


def _pid(process: subprocess.Popen[bytes] | None) -> int:
    if process is None:
        raise RuntimeError("the throwaway server has no process")
    return process.pid


def _groups(running: cluster.Cluster, postgres: int, redis: int) -> dict[str, list[int]]:
    _cpu_so_far, children = cluster.process_table()
    workers = [worker.pid for worker in running.workers]
    return {
        "worker processes": workers,
        "sandbox children": [p for p in cluster.descendants(workers, children) if p not in workers],
        "scheduler": cluster.descendants([running.scheduler.pid], children),
        "postgresql": cluster.descendants([postgres], children),
        "redis": [redis],
    }


def _report(ids: list[int], count: int, used: dict[str, float]) -> None:
    from executions.models import Execution, Invocation

    rows = list(Execution.objects.filter(pk__in=ids).values_list("started_at", "ended_at"))
    window = (max(row[1] for row in rows) - min(row[0] for row in rows)).total_seconds()
    spans = Invocation.objects.filter(execution_id__in=ids).values_list("started_at", "ended_at")
    busy = sum((ended - started).total_seconds() for started, ended in spans)
    print(f"{count} executions, {count / window:.1f}/s; worker threads busy {busy / (8 * window):.0%}")
    for name, seconds in used.items():
        print(f"  {name:18s} {seconds / count * 1000:6.2f} ms CPU per execution")
    print(f"  {'all':18s} {sum(used.values()) / count * 1000:6.2f} ms CPU per execution")


if __name__ == "__main__":
    main()
