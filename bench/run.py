"""``make bench``: this engine and DBOS side by side on one throwaway PostgreSQL 15, in one run.

    .venv/bin/python -m bench.run [--reps 3] [--executions 100] [--throughput 300]
                                  [--timers 5000] [--timer-seconds 30] [--json bench/results.json]

A quick try (a couple of minutes):

    .venv/bin/python -m bench.run --reps 1 --executions 20 --throughput 40 --timers 50 --timer-seconds 3

One PostgreSQL 15 (fsync on, shared_buffers=256MB) and one Redis serve both systems. DBOS runs
from ``.venv-bench`` (requirements-bench.txt; ``make bench`` installs it) as subprocesses
(bench/dbos_peer.py, bench/dbos_side.py), on a database of its own per repetition on the same
server. Each repetition measures both systems, alternating which goes first:

1. Step overhead p50 (wall), one execution at a time: (median of a 20-step execution - median
   of a 0-step one) / 20. The engine: a worker's invoker in this process, handlers in a sandbox
   child as workers run them (bench.engine_side.per_step; also CPU, worker + sandbox, and
   commits per step). DBOS: the same workflow called in its process (bench/dbos_peer.py).
   The SDK's own floor, the same handler on its in-memory test runner, is measured in each
   repetition too (wall and CPU); ``cpu_beyond_sdk_ms`` = the engine's CPU per step - the
   SDK's CPU per step.
2. Throughput of a 5-step handler, N executions in all. The engine: 2 x ``durable worker
   --pool threads --concurrency 4`` + one ``durable scheduler`` (what the README recommends),
   N executions started by this process as fast as it can; executions/s = N / (last
   ``ended_at`` - first ``started_at``). DBOS: 2 processes x 4 threads calling the workflow,
   N / 2 each, released together; workflows/s = N / (last call's end - first call's start
   across both processes).

Ratios are engine / DBOS within each repetition, then min / median / max. Once per run: what
the sandbox costs (the engine's per-step run with handlers on the invoker's own thread against
the sandboxed run, first repetition), and timers at scale (bench.timers). Prints a Markdown
table and writes JSON (``--json``). Benchmarks, not tests: nothing here asserts a timing.

The engine's modules are imported inside functions throughout bench/: they need Django set up
first, which ``_setup_django`` does once the throwaway servers are up.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import dbos_side, engine_side, report, timers
from bench.cluster import STEPS_FUNCTION
from tests.servers import start_postgres, start_redis

REPO = Path(__file__).resolve().parent.parent
PG_SETTINGS = {"shared_buffers": "256MB"}
# The flags a figure depends on: a run with all of them at their defaults is a "default run".
MEASURED = (
    "reps",
    "executions",
    "throughput",
    "workers",
    "threads",
    "timers",
    "timer_seconds",
    "timer_starters",
)


def _arguments() -> tuple[argparse.Namespace, bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions of the side-by-side pair")
    parser.add_argument("--executions", type=int, default=100, help="per-step rounds (0- and 20-step)")
    parser.add_argument("--throughput", type=int, default=300, help="executions per throughput run")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (and DBOS processes)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (and per DBOS process)")
    parser.add_argument("--timers", type=int, default=5000, help="waiting executions (0: skip the phase)")
    parser.add_argument("--timer-seconds", type=int, default=30, help="how long each one waits")
    parser.add_argument(
        "--timer-starters", type=int, default=1, help="threads starting the waiting executions"
    )
    parser.add_argument(
        "--timer-deadline", type=float, default=600.0, help="seconds after the last start + the wait"
    )
    parser.add_argument(
        "--sandbox-cost", action=argparse.BooleanOptionalAction, default=True, help="in-process comparison"
    )
    parser.add_argument("--peer-python", type=Path, default=None, help="Python with DBOS (.venv-bench)")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results.json", help="where to write")
    args = parser.parse_args()
    default_run = all(getattr(args, name) == parser.get_default(name) for name in MEASURED)
    return args, default_run


def main() -> None:
    args, default_run = _arguments()
    peer_python = args.peer_python or dbos_side.DEFAULT_PYTHON
    machine = _machine(dbos_side.check_python(peer_python))
    began = time.monotonic()
    log_dir = Path(tempfile.mkdtemp(prefix="durable-bench-logs-"))
    try:
        measured = _on_servers(args, peer_python, log_dir, machine)
    except BaseException:
        print(f"The bench failed; process logs are in {log_dir}", file=sys.stderr)
        raise
    shutil.rmtree(log_dir, ignore_errors=True)
    machine["load_after"] = os.getloadavg()
    results = _results(args, default_run, machine, measured, time.monotonic() - began)
    print(report.table(results))
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nWritten to {args.json} (wall time {results['wall_seconds']:.0f} s).")


def _on_servers(
    args: argparse.Namespace, peer_python: Path, log_dir: Path, machine: dict[str, Any]
) -> dict[str, Any]:
    with start_postgres(fsync=True, settings=PG_SETTINGS) as pg, start_redis() as redis:
        machine.update(postgres=_version(pg.version), redis=_version(redis.version))
        _setup_django(pg.url, redis.url, pg.directory / "var")
        reps = [_repetition(args, index, peer_python, pg, log_dir) for index in range(args.reps)]
        timers = _timers(args, log_dir) if args.timers else None
    return {"reps": reps, "timers": timers}


def _setup_django(database_url: str, redis_url: str, var_dir: Path) -> None:
    os.environ.update(
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=redis_url,
        REDIS_URL=redis_url,
        DJANGO_SETTINGS_MODULE="durable_console.settings",
        DURABLE_VAR_DIR=str(var_dir),
        DURABLE_HANDLER_MODULES="bench",  # the benchmark's handlers: bench.handlers
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from executions.engine.functions import function_register

    function_register(name=STEPS_FUNCTION, handler="bench.handlers:steps")
    timers.register()


def _repetition(
    args: argparse.Namespace, index: int, peer_python: Path, pg: Any, log_dir: Path
) -> dict[str, Any]:
    """Both systems, the engine first in even repetitions and DBOS first in odd ones."""
    order = ["engine", "dbos"] if index % 2 == 0 else ["dbos", "engine"]
    _progress(f"repetition {index + 1}/{args.reps}: the SDK's floor, then {' then '.join(order)}")
    rep: dict[str, Any] = {"order": order, "sdk_floor": engine_side.sdk_floor(max(20, args.executions // 5))}
    for side in order:
        if side == "engine":
            rep["engine"] = _engine(args, log_dir, in_process=index == 0 and args.sandbox_cost)
        else:
            rep["dbos"] = _dbos(args, peer_python, pg.url_for(f"dbos_rep{index + 1}"), log_dir)
    return rep


def _engine(args: argparse.Namespace, log_dir: Path, *, in_process: bool) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if in_process:
        _progress("  engine per-step, handlers on the invoker's thread (for the sandbox's cost)")
        result["per_step_in_process"] = engine_side.per_step(args.executions, "in_process")
    _progress("  engine per-step, handlers in a sandbox")
    result["per_step"] = engine_side.per_step(args.executions, "sandbox")
    _progress("  engine throughput")
    result["throughput"] = engine_side.throughput(args.throughput, args.workers, args.threads, log_dir)
    return result


def _dbos(args: argparse.Namespace, peer_python: Path, database_url: str, log_dir: Path) -> dict[str, Any]:
    url = dbos_side.sqlalchemy_url(database_url)
    _progress("  DBOS per-step")
    per_step = dbos_side.per_step(peer_python, url, args.executions, log_dir)
    _progress("  DBOS throughput")
    tput = dbos_side.throughput(peer_python, url, args.throughput, args.workers, args.threads, log_dir)
    return {"per_step": per_step, "throughput": tput}


def _timers(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    _progress(f"timers: {args.timers} executions waiting {args.timer_seconds} s")
    return timers.timer_phase(
        args.timers,
        args.timer_seconds,
        args.timer_deadline,
        args.workers,
        args.threads,
        log_dir,
        args.timer_starters,
    )


def _progress(message: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def _machine(dbos_version: str) -> dict[str, Any]:
    with open("/proc/meminfo") as meminfo:
        memory_kb = int(meminfo.readline().split()[1])
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(memory_kb / 2**20, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "dbos": dbos_version,
        "load_before": os.getloadavg(),
    }


def _results(
    args: argparse.Namespace,
    default_run: bool,
    machine: dict[str, Any],
    measured: dict[str, Any],
    wall: float,
) -> dict[str, Any]:
    reps = measured["reps"]
    first_engine = reps[0]["engine"]
    sandbox = (
        engine_side.sandbox_cost(first_engine["per_step_in_process"], first_engine["per_step"])
        if "per_step_in_process" in first_engine
        else None
    )
    return {
        **report.summarize(reps),
        "timers": measured["timers"],
        "sandbox_cost": sandbox,
        "config": _config(args, machine),
        "command": "python -m bench.run " + " ".join(sys.argv[1:]),
        "default_run": default_run,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git": _git_state(),
        "wall_seconds": round(wall),
        "machine": machine,
        "repetitions_count": len(reps),
        "repetitions": reps,
    }


def _config(args: argparse.Namespace, machine: dict[str, Any]) -> str:
    return (
        f"one PostgreSQL {machine['postgres']} (fsync on, shared_buffers=256MB) and "
        f"Redis {machine['redis']} for both; "
        f"{args.reps} repetitions alternating which system goes first; "
        f"throughput: {args.throughput} executions of a 5-step no-op handler, engine on {args.workers} x "
        f"`durable worker --pool threads --concurrency {args.threads}` + 1 `durable scheduler`, "
        f"DBOS {machine['dbos']} on {args.workers} processes x {args.threads} threads calling the workflow; "
        f"step overhead: {args.executions} rounds of 0- and 20-step executions one at a time "
        f"(engine handlers in a sandbox child; the SDK's floor in a fresh process, the SDK as shipped); "
        f"timers: {args.timers} executions started by {args.timer_starters} thread(s), each waiting "
        f"{args.timer_seconds} s then one step, same engine processes; throughput executions started "
        f"by 4 threads"
    )


def _version(banner: str) -> str:
    """ "15.18" from "postgres (PostgreSQL) 15.18 (Debian ...)", "7.0.15" from "Redis server v=7.0.15 ..."."""
    match = re.search(r"(?:\) |v=)(\d+(?:\.\d+)+)", banner)
    return match.group(1) if match else banner


def _git(*argv: str) -> str:
    return subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True).stdout.strip()


def _git_state() -> dict[str, Any]:
    """The commit measured, and the files that differ from it (others edit the engine meanwhile)."""
    return {
        "commit": _git("rev-parse", "--short", "HEAD"),
        "uncommitted": _git("status", "--porcelain").splitlines(),
    }


if __name__ == "__main__":
    main()
