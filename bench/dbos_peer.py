"""The DBOS peer, measured the same way as our engine (bench/run.py's per-step and throughput runs).

Run with a Python that has ``dbos`` (requirements-bench.txt), given a PostgreSQL URL:

    python bench/dbos_peer.py postgresql://postgres@127.0.0.1:PORT/postgres [--throughput 300]

Prints JSON: per-step latency and CPU from 0-step vs 20-step workflows run one
at a time, and workflows per second of a 5-step workflow on 8 threads.
``bench.run`` calls it in a subprocess against the same server it uses for us.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from dbos import DBOS, DBOSConfig


@DBOS.step()
def no_op(index: int) -> int:
    return index


@DBOS.workflow()
def steps(count: int) -> int:
    return sum(no_op(index) for index in range(count))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--throughput", type=int, default=300)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    config: DBOSConfig = {"name": "durable-bench-peer", "system_database_url": args.database_url}
    DBOS(config=config)
    DBOS.launch()
    report = {"per_step": per_step(args.runs), "throughput": throughput(args.throughput, args.threads)}
    DBOS.destroy()
    print(json.dumps(report))


def per_step(runs: int) -> dict[str, float]:
    samples: dict[int, dict[str, list[float]]] = {0: {"wall": [], "cpu": []}, 20: {"wall": [], "cpu": []}}
    for index in range(runs + 5):
        for count in (0, 20):
            wall, cpu = time.perf_counter(), time.process_time()
            steps(count)
            if index >= 5:
                samples[count]["wall"].append(time.perf_counter() - wall)
                samples[count]["cpu"].append(time.process_time() - cpu)
    wall = (statistics.median(samples[20]["wall"]) - statistics.median(samples[0]["wall"])) / 20
    cpu = (statistics.median(samples[20]["cpu"]) - statistics.median(samples[0]["cpu"])) / 20
    return {"step_wall_ms_p50": wall * 1000, "step_cpu_ms": cpu * 1000}


def throughput(workflows: int, threads: int) -> dict[str, float]:
    began = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        latencies = list(pool.map(lambda _: _timed(), range(workflows)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "workflows": workflows,
        "threads": threads,
        "workflows_per_second": workflows / elapsed,
        "latency_ms_p50": latencies[len(latencies) // 2] * 1000,
        "latency_ms_p95": latencies[int(len(latencies) * 0.95)] * 1000,
    }


def _timed() -> float:
    began = time.perf_counter()
    steps(5)
    return time.perf_counter() - began


if __name__ == "__main__":
    main()
