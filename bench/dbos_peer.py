"""The DBOS peer: the same workflows as bench/handlers.py's ``steps``, measured the same way.

Run by ``bench.run`` with the Python of ``.venv-bench`` (DBOS from requirements-bench.txt),
never the app's venv, against a database of its own on the bench's PostgreSQL (DBOS creates
the database and its system tables on launch):

    python bench/dbos_peer.py URL per-step [--runs 100]
    python bench/dbos_peer.py URL throughput --workflows 150 --threads 4 --executor-id bench-0

``per-step``: 0-step and 20-step workflows in turn, one at a time, 5 warm-up rounds not
counted; wall (perf_counter) and CPU (process_time, every thread of this process) around each
call. Prints one JSON line.

``throughput``: DBOS's natural mode, the application calling the workflow function on its own
threads. After launch and one warm-up workflow per thread, prints ``ready`` and waits for one
line on stdin, so that ``bench.run`` can release several processes together; then ``--threads``
threads run ``--workflows`` 5-step workflows in all, each call timed with time.time() (one
clock for every process on the machine). Prints one JSON line with the first call's start and
the last call's end; ``bench.run`` takes its window across processes from these.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dbos import DBOS, DBOSConfig

WARM_UP_ROUNDS = 5


@DBOS.step()
def no_op(index: int) -> int:
    return index


@DBOS.workflow()
def steps(count: int) -> int:
    """``count`` sequential no-op steps, like bench.handlers.steps."""
    return sum(no_op(index) for index in range(count))


def main() -> None:
    args = _arguments()
    config: DBOSConfig = {
        "name": "durable-bench-peer",
        "system_database_url": args.database_url,
        "executor_id": args.executor_id,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    try:
        report = per_step(args.runs) if args.mode == "per-step" else throughput(args.workflows, args.threads)
    finally:
        DBOS.destroy()
    print(json.dumps(report), flush=True)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("database_url", help="postgresql://... naming a database for DBOS alone")
    parser.add_argument("mode", choices=("per-step", "throughput"))
    parser.add_argument("--runs", type=int, default=100, help="per-step: rounds of 0- and 20-step workflows")
    parser.add_argument("--workflows", type=int, default=150, help="throughput: workflows in this process")
    parser.add_argument("--threads", type=int, default=4, help="throughput: calling threads")
    parser.add_argument("--executor-id", default="bench-0", help="DBOS executor id (one per process)")
    return parser.parse_args()


def per_step(runs: int) -> dict[str, Any]:
    """Per step = (median of a 20-step workflow - median of a 0-step one) / 20, wall and CPU."""
    samples: dict[int, dict[str, list[float]]] = {0: {"wall": [], "cpu": []}, 20: {"wall": [], "cpu": []}}
    for index in range(runs + WARM_UP_ROUNDS):
        for count in (0, 20):
            wall, cpu = time.perf_counter(), time.process_time()
            steps(count)
            if index >= WARM_UP_ROUNDS:
                samples[count]["wall"].append(time.perf_counter() - wall)
                samples[count]["cpu"].append(time.process_time() - cpu)

    def per(key: str) -> float:
        return (statistics.median(samples[20][key]) - statistics.median(samples[0][key])) / 20 * 1000

    return {
        "runs": runs,
        "workflow_wall_ms_p50": {str(k): statistics.median(v["wall"]) * 1000 for k, v in samples.items()},
        "step_wall_ms_p50": per("wall"),
        "step_cpu_ms": per("cpu"),
    }


def throughput(workflows: int, threads: int) -> dict[str, Any]:
    """5-step workflows on ``threads`` threads, released by a line on stdin."""
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: steps(5), range(threads)))  # warm-up: connections, caches
        print("ready", flush=True)
        sys.stdin.readline()
        spans = list(pool.map(lambda _: _timed_call(), range(workflows)))
    latencies = sorted(end - start for start, end in spans)
    return {
        "workflows": workflows,
        "threads": threads,
        "first_start": min(start for start, _ in spans),
        "last_end": max(end for _, end in spans),
        "latency_ms_p50": latencies[len(latencies) // 2] * 1000,
    }


def _timed_call() -> tuple[float, float]:
    started = time.time()
    steps(5)
    return started, time.time()


if __name__ == "__main__":
    main()
