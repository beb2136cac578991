"""This engine's side of ``bench.run``: per-step overhead, the SDK's floor, and throughput.

Run inside the bench process once Django is set up against the bench's PostgreSQL and Redis.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

from bench.cluster import STEPS_FUNCTION, running_cluster, start_executions, wait_until_ended

WARM_UP_ROUNDS = 5
THROUGHPUT_DEADLINE_SECONDS = 600.0


def _commits() -> int:
    """Write transactions so far, counted by transaction ids (each call uses one itself).

    pg_stat_database lags by up to a second in PostgreSQL 15, so it cannot be
    read between executions; every committed write transaction takes one xid.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT txid_current()")
        return int(cursor.fetchone()[0])


def per_step(runs: int, where: str) -> dict[str, Any]:
    """Per step = (median of a 20-step execution - median of a 0-step one) / 20, one at a time.

    A worker's invoker in this process runs each execution from start to end; wall is
    perf_counter around ``execution_start`` + ``run_execution``, CPU is this process's plus
    its sandbox child's (/proc), commits are write transactions (xids). ``where`` is
    "sandbox" (handlers in a sandbox child, as every worker runs them) or "in_process"
    (handlers on the invoker's own thread, as before the sandbox existed; kept only to
    measure what the sandbox costs). The first rounds warm up and are not counted.
    """
    from executions import services
    from executions.workers.invoker import Invoker, SandboxRunner
    from executions.workers.sandbox import SandboxPool
    from tests.in_process_runner import InProcessRunner

    pool = SandboxPool(1) if where == "sandbox" else None
    invoker = Invoker("bench", SandboxRunner(pool) if pool else InProcessRunner())
    samples: dict[int, dict[str, list[float]]] = {0: _empty(), 20: _empty()}
    try:
        for round_index in range(runs + WARM_UP_ROUNDS):
            for steps in (0, 20):
                commits = _commits()
                wall, cpu = time.perf_counter(), _cpu_seconds(pool)
                started = services.execution_start(
                    function=STEPS_FUNCTION, input_payload=json.dumps({"steps": steps})
                )
                invoker.run_execution(started.execution.pk)
                wall, cpu = time.perf_counter() - wall, _cpu_seconds(pool) - cpu
                if round_index >= WARM_UP_ROUNDS:
                    samples[steps]["wall"].append(wall)
                    samples[steps]["cpu"].append(cpu)
                    samples[steps]["commits"].append(_commits() - commits - 1)  # minus the counter's own
    finally:
        invoker.close()
        if pool is not None:
            pool.close()
    return _per_step_summary(runs, where, samples)


def _per_step_summary(runs: int, where: str, samples: dict[int, dict[str, list[float]]]) -> dict[str, Any]:
    per = {
        key: (statistics.median(samples[20][key]) - statistics.median(samples[0][key])) / 20
        for key in ("wall", "cpu", "commits")
    }
    p99 = (_quantile(samples[20]["wall"], 0.99) - statistics.median(samples[0]["wall"])) / 20
    return {
        "runs": runs,
        "where": where,
        "execution_wall_ms_p50": {str(k): statistics.median(v["wall"]) * 1000 for k, v in samples.items()},
        "execution_cpu_ms_p50": {str(k): statistics.median(v["cpu"]) * 1000 for k, v in samples.items()},
        "step_wall_ms_p50": per["wall"] * 1000,
        "step_wall_ms_p99": p99 * 1000,
        "step_cpu_ms": per["cpu"] * 1000,
        "step_commits": per["commits"],
    }


def _cpu_seconds(pool: Any) -> float:
    """CPU time of this process plus its sandbox children (utime + stime from /proc)."""
    total = time.process_time()
    for pid in pool.child_pids() if pool else ():
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def sandbox_cost(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """What running handlers in a sandbox adds, per invocation (0-step execution) and per step."""

    def delta(key: str, steps: str) -> float:
        return after[key][steps] - before[key][steps]

    figures = {
        "in_process_invocation_wall_ms": before["execution_wall_ms_p50"]["0"],
        "sandbox_invocation_wall_ms": after["execution_wall_ms_p50"]["0"],
        "in_process_invocation_cpu_ms": before["execution_cpu_ms_p50"]["0"],
        "sandbox_invocation_cpu_ms": after["execution_cpu_ms_p50"]["0"],
        "in_process_step_wall_ms_p50": before["step_wall_ms_p50"],
        "sandbox_step_wall_ms_p50": after["step_wall_ms_p50"],
        "in_process_step_cpu_ms": before["step_cpu_ms"],
        "sandbox_step_cpu_ms": after["step_cpu_ms"],
        "invocation_wall_ms": delta("execution_wall_ms_p50", "0"),
        "invocation_cpu_ms": delta("execution_cpu_ms_p50", "0"),
        "step_wall_ms": after["step_wall_ms_p50"] - before["step_wall_ms_p50"],
        "step_cpu_ms": after["step_cpu_ms"] - before["step_cpu_ms"],
    }
    return {name: round(value, 2) for name, value in figures.items()}


def _empty() -> dict[str, list[float]]:
    return {"wall": [], "cpu": [], "commits": []}


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sdk_floor(runs: int) -> dict[str, Any]:
    """The same handler on the SDK testing library's in-memory runner: the SDK's own cost.

    Measured in a fresh Python process: the SDK as shipped. This process may already hold
    the engine's tunings of SDK internals (``executions/workers/sdk_internals.py``, applied
    once a worker runtime ran here), which skip the SDK's 1 ms batching wait.
    """
    finished = subprocess.run(
        [sys.executable, "-m", "bench.engine_side", str(runs)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return cast(dict[str, Any], json.loads(finished.stdout.strip().splitlines()[-1]))


def _sdk_floor_here(runs: int) -> dict[str, Any]:
    """``sdk_floor`` in this process.

    Per step = (median of a 20-step run - median of a 0-step run) / 20, wall (perf_counter)
    and CPU (process_time: every thread of this process, the runner's included). The
    runner's ``run`` waits on completion (no polling), so wall is not quantised by a poll.
    """
    from aws_durable_execution_sdk_python_testing.runner import DurableFunctionTestRunner

    from bench.handlers import steps as handler

    samples: dict[int, dict[str, list[float]]] = {0: _empty(), 20: _empty()}
    with DurableFunctionTestRunner(handler=handler, poll_interval=0.01) as runner:
        for round_index in range(runs + WARM_UP_ROUNDS):
            for count in (0, 20):
                wall, cpu = time.perf_counter(), time.process_time()
                runner.run(input=json.dumps({"steps": count}), execution_timeout=60)
                if round_index >= WARM_UP_ROUNDS:
                    samples[count]["wall"].append(time.perf_counter() - wall)
                    samples[count]["cpu"].append(time.process_time() - cpu)

    def per(key: str) -> float:
        return (statistics.median(samples[20][key]) - statistics.median(samples[0][key])) / 20 * 1000

    return {"runs": runs, "step_wall_ms_p50": per("wall"), "step_cpu_ms": per("cpu")}


def throughput(executions: int, workers: int, threads: int, log_dir: Path) -> dict[str, Any]:
    """Executions per second of a 5-step handler on the production configuration.

    ``workers`` x ``durable worker --pool threads --concurrency threads`` + one ``durable
    scheduler`` (bench.cluster), warmed up first. This process then starts ``executions``
    executions from four threads as fast as they can (``cluster.start_executions``; each
    start publishes its Celery hint) and polls the database until all have ended.
    executions/s = N / (last ``ended_at`` - first ``started_at``), both written by the
    engine in the start and final transactions.
    """
    from executions.models import Execution

    with running_cluster(workers, threads, log_dir) as cluster:
        began = time.perf_counter()
        ids = start_executions(STEPS_FUNCTION, '{"steps": 5}', executions)
        start_rate = executions / (time.perf_counter() - began)
        deadline = time.monotonic() + THROUGHPUT_DEADLINE_SECONDS
        wait_until_ended(ids, deadline, "the throughput executions", cluster)
    rows = list(Execution.objects.filter(pk__in=ids).values_list("status", "started_at", "ended_at"))
    window = (max(row[2] for row in rows) - min(row[1] for row in rows)).total_seconds()
    latencies = sorted((row[2] - row[1]).total_seconds() for row in rows)
    return {
        "executions": executions,
        "workers": workers,
        "threads_per_worker": threads,
        "succeeded": sum(1 for row in rows if row[0] == "SUCCEEDED"),
        "executions_per_second": executions / window,
        "start_rate_per_second": start_rate,
        "latency_ms_p50": latencies[len(latencies) // 2] * 1000,
        "latency_ms_p95": latencies[int(len(latencies) * 0.95)] * 1000,
    }


if __name__ == "__main__":  # the SDK floor, in a process of its own (sdk_floor)
    print(json.dumps(_sdk_floor_here(int(sys.argv[1]))))
