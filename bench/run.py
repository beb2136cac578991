"""Engine benchmarks on a throwaway PostgreSQL (fsync on) and Redis.

    .venv/bin/python -m bench.run [--executions 100] [--throughput 300]

1. Per-step overhead (one worker, one execution at a time): wall time, worker
   CPU (sandbox child included) and database commits per step, from the
   difference between a 20-step and a 0-step handler, with handlers in a
   sandbox child (as workers run them) and, for comparison, on the worker's own
   thread (as before the sandbox): the difference is what the sandbox costs.
   The SDK's own cost is measured on the testing library's in-memory runner.
2. Throughput: a 5-step handler, 2 Celery worker processes (solo pool) and the
   scheduler as separate processes, executions started as fast as the bench
   can, measured until all have ended.

Prints a JSON report; the README quotes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=100, help="per-step runs per variant")
    parser.add_argument("--throughput", type=int, default=300, help="executions in the throughput run")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker process")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from tests.servers import start_postgres, start_redis

    with start_postgres(fsync=True, settings={"shared_buffers": "256MB"}) as pg, start_redis() as redis:
        os.environ.update(
            DATABASE_URL=pg.url,
            CELERY_BROKER_URL=redis.url,
            REDIS_URL=redis.url,
            DJANGO_SETTINGS_MODULE="durable_console.settings",
            DURABLE_VAR_DIR=str(Path(pg.data_dir).parent / "var"),
            DURABLE_HANDLER_MODULES="bench",  # the benchmark's handlers: bench.handlers
        )
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from executions.engine.functions import function_register

        function_register(name="bench-steps", handler="bench.handlers:steps")
        report: dict[str, Any] = {"machine": _machine()}
        report["per_step_in_process"] = per_step(args.executions, "in_process")
        report["per_step"] = per_step(args.executions, "sandbox")
        report["sandbox_cost"] = sandbox_cost(report["per_step_in_process"], report["per_step"])
        report["sdk_floor"] = sdk_floor(max(20, args.executions // 5))
        report["throughput"] = throughput(args.throughput, args.workers, args.threads)
    print(json.dumps(report, indent=2))


def _machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


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
    """Sequential executions, one at a time: the latency and cost of each checkpointed step.

    ``where`` is "sandbox" (handlers in a sandbox child, as every worker runs them) or
    "in_process" (handlers on the worker's own thread, as before the sandbox existed;
    kept here only to measure what the sandbox costs). CPU counts the sandbox child's too.
    """
    from executions import services
    from executions.workers.invoker import Invoker, SandboxRunner
    from executions.workers.sandbox import SandboxPool
    from tests.in_process_runner import InProcessRunner

    pool = SandboxPool(1) if where == "sandbox" else None
    runner = SandboxRunner(pool) if pool else InProcessRunner()
    invoker = Invoker("bench", runner)
    samples: dict[int, dict[str, list[float]]] = {0: _empty(), 20: _empty()}
    for round_index in range(runs + 5):
        for steps in (0, 20):
            commits = _commits()
            wall, cpu = time.perf_counter(), _cpu_seconds(pool)
            started = services.execution_start(
                function="bench-steps", input_payload=json.dumps({"steps": steps})
            )
            invoker.run_execution(started.execution.pk)
            wall, cpu = time.perf_counter() - wall, _cpu_seconds(pool) - cpu
            if round_index >= 5:  # warm-up rounds are not counted
                samples[steps]["wall"].append(wall)
                samples[steps]["cpu"].append(cpu)
                samples[steps]["commits"].append(_commits() - commits - 1)  # minus the counter's own
    invoker.close()
    if pool is not None:
        pool.close()
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

    return {
        "invocation_wall_ms": delta("execution_wall_ms_p50", "0"),
        "invocation_cpu_ms": delta("execution_cpu_ms_p50", "0"),
        "step_wall_ms": after["step_wall_ms_p50"] - before["step_wall_ms_p50"],
        "step_cpu_ms": after["step_cpu_ms"] - before["step_cpu_ms"],
    }


def _empty() -> dict[str, list[float]]:
    return {"wall": [], "cpu": [], "commits": []}


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sdk_floor(runs: int) -> dict[str, Any]:
    """The same handler on the SDK testing library's in-memory service: the SDK's own cost."""
    from aws_durable_execution_sdk_python_testing.runner import DurableFunctionTestRunner

    from bench.handlers import steps as handler

    cpu: dict[int, list[float]] = {0: [], 20: []}
    with DurableFunctionTestRunner(handler=handler, poll_interval=0.01) as runner:
        for _ in range(runs):
            for count in (0, 20):
                started = time.process_time()
                runner.run(input=json.dumps({"steps": count}), execution_timeout=60)
                cpu[count].append(time.process_time() - started)
    return {"runs": runs, "step_cpu_ms": (statistics.median(cpu[20]) - statistics.median(cpu[0])) / 20 * 1000}


def throughput(executions: int, workers: int, threads: int) -> dict[str, Any]:
    """Executions per second of a 5-step handler with separate worker processes."""
    from executions import services
    from executions.models import Execution

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    manage = [sys.executable, str(REPO / "manage.py"), "durable"]
    processes = [
        subprocess.Popen(
            [*manage, "worker", "--concurrency", "1", "--pool", "solo"],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    processes.append(
        subprocess.Popen(
            [*manage, "scheduler"], env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    )
    try:
        _warm_up(services, Execution)
        began = time.perf_counter()
        ids = [
            services.execution_start(function="bench-steps", input_payload='{"steps": 5}').execution.pk
            for _ in range(executions)
        ]
        start_rate = executions / (time.perf_counter() - began)
        deadline = time.monotonic() + 600
        while Execution.objects.filter(pk__in=ids, ended_at__isnull=True).exists():
            if time.monotonic() > deadline:
                raise TimeoutError("throughput run did not finish in 600 s")
            time.sleep(0.05)
        rows = list(Execution.objects.filter(pk__in=ids).values_list("status", "started_at", "ended_at"))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
    first = min(row[1] for row in rows)
    last = max(row[2] for row in rows)
    latencies = sorted((row[2] - row[1]).total_seconds() for row in rows)
    return {
        "executions": executions,
        "workers": workers,
        "threads_per_worker": threads,
        "succeeded": sum(1 for row in rows if row[0] == "SUCCEEDED"),
        "executions_per_second": executions / (last - first).total_seconds(),
        "steps_per_second": 5 * executions / (last - first).total_seconds(),
        "start_rate_per_second": start_rate,
        "latency_ms_p50": latencies[len(latencies) // 2] * 1000,
        "latency_ms_p95": latencies[int(len(latencies) * 0.95)] * 1000,
    }


def _warm_up(services: Any, execution_model: Any) -> None:
    """One execution through the workers, so process start-up is not measured."""
    pk = services.execution_start(function="bench-steps", input_payload='{"steps": 1}').execution.pk
    deadline = time.monotonic() + 60
    while not execution_model.objects.get(pk=pk).ended_at:
        if time.monotonic() > deadline:
            raise TimeoutError("workers did not run the warm-up execution")
        time.sleep(0.05)


if __name__ == "__main__":
    main()
