"""Console pages while the engine is busy: rendered over HTTP, idle and under load.

    .venv/bin/python -m bench.console_load [--seed 100000] [--executions 1000] [--idle-rounds 30]
                                           [--load-seconds 240] [--json FILE]

Starts a throwaway PostgreSQL (fsync on) and Redis (``tests/servers.py``),
migrates, seeds a history (``bench/console_seed.py``; ``--seed 0`` for none),
registers the demo functions, then runs the production layout as separate
processes: a web process (``durable serve --no-embedded``), two workers
(``durable worker --pool threads --concurrency 4``) and a scheduler.

A client logged in as an operator (a real login through the login form)
requests the home page and the execution list (no filter, a status filter, a
function filter) in turn, one request at a time, over keep-alive HTTP; each
time is the whole response (the view, its queries, the template), from
sending the request to the last byte of the body:

1. idle: ``--idle-rounds`` rounds of every page, nothing running;
2. load: the bench starts ``--executions`` executions of the demo functions
   (in turn, as fast as one thread can) and keeps requesting until every one
   has started and none is being run or waiting to be (those parked on a
   callback or a long wait stay RUNNING), or ``--load-seconds`` have passed.

A control request (``/healthz``: the same server and middleware, no query, no
template) shows what the machine alone adds. The CPU each process group used in
each phase is read from /proc, with the whole machine's: other users' processes
on a shared machine show there.

Prints Markdown tables (p50 / p95 / max per page and phase, CPU) and writes JSON
(``--json``, default ``var/console-load.json``).
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import math
import multiprocessing
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench import cluster

REPO = Path(__file__).resolve().parent.parent
TARGET_P95_MS = 300
OPERATOR = "bench-operator"
PASSWORD = "bench operator password"

# (label, path, a marker the rendered page must contain)
PAGES = (
    ("home", "/", 'id="status-counts"'),
    ("list, no filter", "/executions/", 'id="execution-results"'),
    ("list, status RUNNING", "/executions/?status=RUNNING", 'id="execution-results"'),
    ("list, function order-processing", "/executions/?function=order-processing", 'id="execution-results"'),
    # Control: the same server and middleware, no query, no template: what the machine adds.
    ("control: /healthz", "/healthz", '"status": "ok"'),
)
# The demo functions the load starts, in turn (the chain-* targets are started by function-chaining).
LOAD_FUNCTIONS = (
    "order-processing",
    "distributed-transaction",
    "booking",
    "batch-processing",
    "function-chaining",
    "document-approval",
    "user-onboarding",
    "data-pipeline",
)


def main() -> None:
    args = _arguments()
    sys.path.insert(0, str(REPO))
    from tests.servers import start_postgres, start_redis

    with start_postgres(fsync=True, settings={"shared_buffers": "256MB"}) as pg, start_redis() as redis:
        report = on_servers(args, pg, redis)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str))
    print(render(report))
    print(f"\nJSON: {args.json}", file=sys.stderr)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--seed", type=int, default=100_000, help="executions of history to seed first (0: none)"
    )
    parser.add_argument("--executions", type=int, default=1000, help="executions started under load")
    parser.add_argument("--idle-rounds", type=int, default=30)
    parser.add_argument("--load-seconds", type=float, default=240.0, help="longest load phase")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--json", type=Path, default=REPO / "var" / "console-load.json")
    return parser.parse_args()


def on_servers(args: argparse.Namespace, pg: Any, redis: Any) -> dict[str, Any]:
    """Set up the database, start the processes, measure; the processes' logs are kept on failure."""
    work = Path(tempfile.mkdtemp(prefix="console-load-"))
    os.environ.update(
        DATABASE_URL=pg.url,
        CELERY_BROKER_URL=redis.url,
        REDIS_URL=redis.url,
        DJANGO_SETTINGS_MODULE="durable_console.settings",
        DURABLE_VAR_DIR=str(work / "var"),
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
    )
    os.environ.pop("EMAIL_HOST", None)
    import django

    django.setup()
    from tests.servers import free_port

    seeded = prepare(args.seed)
    port = free_port()
    processes = start_processes(port, args.workers, args.threads, work)
    groups = {
        "web": [processes["web"].pid],
        "workers and their sandboxes": [p.pid for name, p in processes.items() if name.startswith("worker")],
        "scheduler": [processes["scheduler"].pid],
        "postgres": [pg.proc.pid] if pg.proc else [],
        "redis": [redis.proc.pid] if redis.proc else [],
    }
    try:
        client = Client("127.0.0.1", port)
        client.wait_ready(processes)
        client.log_in(OPERATOR, PASSWORD)
        for _ in range(3):  # warm-up: imports, template loading, connections
            measure_round(client, {})
        report = run(client, args, seeded, pg.version, groups)
    except BaseException:
        print(f"the processes' logs are in {work}", file=sys.stderr)
        raise
    finally:
        stop_processes(processes)
    shutil.rmtree(work, ignore_errors=True)
    return report


# --- setup ------------------------------------------------------------------------------------


def prepare(seed_rows: int) -> int:
    """Migrate, seed the history, register the demos, create the operator. Returns rows seeded."""
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.db import connection

    from durable_console.bootstrap import register_demo_functions

    call_command("migrate", verbosity=0)
    if seed_rows:
        from bench.console_seed import seed

        connection.ensure_connection()
        connection.connection.autocommit = True
        began = time.perf_counter()
        print(f"seeding {seed_rows:,} executions ...", file=sys.stderr, flush=True)
        with connection.connection.cursor() as cursor:
            seed(cursor, executions=seed_rows, operations=300)
        print(f"seeded in {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
    # The seed's functions share some demo names; registering updates them to the demo handlers.
    register_demo_functions()
    user = User.objects.create_user(OPERATOR, password=PASSWORD)
    user.groups.add(Group.objects.get(name="operators"))
    connection.close()
    return seed_rows


def start_processes(port: int, workers: int, threads: int, work: Path) -> dict[str, subprocess.Popen[bytes]]:
    manage = [sys.executable, str(REPO / "manage.py"), "durable"]
    commands = [
        ("web", [*manage, "serve", "--no-embedded", "--port", str(port)]),
        *[
            (f"worker-{n}", [*manage, "worker", "--pool", "threads", "--concurrency", str(threads)])
            for n in range(workers)
        ],
        ("scheduler", [*manage, "scheduler"]),
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    processes = {}
    for name, argv in commands:
        with open(work / f"{name}.log", "wb") as log:
            processes[name] = subprocess.Popen(
                argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
    print("processes started", file=sys.stderr, flush=True)
    return processes


def stop_processes(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for process in processes.values():
        process.terminate()
    for process in processes.values():
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the client -------------------------------------------------------------------------------


class Client:
    """Keep-alive HTTP to the web process with a session cookie."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.cookies: dict[str, str] = {}
        self.connection = http.client.HTTPConnection(host, port, timeout=60)

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, str]:
        headers = {"Host": f"{self.host}:{self.port}"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Referer"] = f"http://{self.host}:{self.port}{path}"
        try:
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
        except (ConnectionError, http.client.HTTPException):
            self.connection.close()  # the server closed an idle keep-alive connection: once more
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
        text = response.read().decode()
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        return response.status, text

    def wait_ready(self, processes: dict[str, subprocess.Popen[bytes]], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(process.poll() is not None for process in processes.values()):
                raise RuntimeError("a process exited during start-up; see its log")
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                self.connection.close()
            time.sleep(0.2)
        raise TimeoutError("the web process did not answer /healthz")

    def log_in(self, username: str, password: str) -> None:
        status, page = self.request("GET", "/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if status != 200 or token is None:
            raise RuntimeError(f"no login form ({status})")
        form = {"username": username, "password": password, "csrfmiddlewaretoken": token.group(1)}
        status, _ = self.request("POST", "/accounts/login/", urlencode(form))
        if status != 302 or "sessionid" not in self.cookies:
            raise RuntimeError(f"login failed ({status})")


def measure_round(client: Client, samples: dict[str, list[float]]) -> None:
    """Each page once; a page that is not the rendered page (an error, a redirect) stops the bench."""
    for label, path, marker in PAGES:
        began = time.perf_counter()
        status, body = client.request("GET", path)
        elapsed = (time.perf_counter() - began) * 1000
        if status != 200 or marker not in body:
            raise RuntimeError(f"{path} answered {status} without {marker!r}")
        samples.setdefault(label, []).append(elapsed)


# --- the phases -------------------------------------------------------------------------------


@dataclass
class Load:
    """Starts the executions in a process of its own (its CPU is not the client's), and says
    when the engine has nothing left to run."""

    count: int
    first_id: int = 0
    process: multiprocessing.process.BaseProcess | None = None
    started_in: Any = None  # shared doubles: seconds the starts took, and the starter's CPU seconds
    cpu: Any = None

    def start(self) -> None:
        from django.db.models import Max

        from executions.models import Execution

        self.first_id = Execution.objects.aggregate(last=Max("id"))["last"] or 0
        context = multiprocessing.get_context("spawn")
        self.started_in, self.cpu = context.Value("d", 0.0), context.Value("d", 0.0)
        self.process = context.Process(target=start_executions, args=(self.count, self.started_in, self.cpu))
        self.process.start()

    @property
    def starting(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def check(self) -> None:
        if self.process is not None and not self.starting and self.process.exitcode != 0:
            raise RuntimeError(f"the starter process failed (exit code {self.process.exitcode})")

    def busy(self) -> int:
        """Executions of the load still to be run or being run (not parked, not ended)."""
        from django.db.models import Q

        from executions.models import Execution

        soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=5)
        return (
            Execution.objects.filter(pk__gt=self.first_id, ended_at__isnull=True)
            .filter(Q(needs_invocation=True) | ~Q(lease_owner="") | Q(wake_at__lte=soon))
            .count()
        )

    def outcome(self) -> dict[str, int]:
        """Executions of the load (chained children included) by status."""
        from django.db.models import Count

        from executions.models import Execution

        rows = Execution.objects.filter(pk__gt=self.first_id).values_list("status").annotate(n=Count("pk"))
        return dict(rows.order_by())


def start_executions(count: int, started_in: Any, cpu: Any) -> None:
    """The starter process: ``count`` executions of the demo functions in turn, one at a time."""
    import django

    django.setup()
    from executions import services

    began = time.perf_counter()
    for n in range(count):
        services.execution_start(function=LOAD_FUNCTIONS[n % len(LOAD_FUNCTIONS)], input_payload="{}")
    started_in.value = time.perf_counter() - began
    cpu.value = time.process_time()


@dataclass
class Phase:
    """The samples of one phase, in milliseconds per page label, and the CPU used meanwhile."""

    samples: dict[str, list[float]]
    cpu: CpuMeter
    load_peak: float = 0.0


def run(
    client: Client, args: argparse.Namespace, seeded: int, postgres: str, groups: dict[str, list[int]]
) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    idle = idle_phase(client, args.idle_rounds, groups)
    load = Load(args.executions)
    busy, busy_seconds = load_phase(client, load, args.load_seconds, groups)
    from django.db import connection

    outcome = load.outcome()
    connection.close()
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "postgres": postgres,
        },
        "command": "python -m bench.console_load " + " ".join(sys.argv[1:]),
        "seeded_executions": seeded,
        "load": {
            "executions": args.executions,
            "started_in_seconds": round(load.started_in.value, 1),
            "phase_seconds": round(busy_seconds, 1),
            "outcome": outcome,
            "workers": args.workers,
            "threads_per_worker": args.threads,
        },
        "load_average": {
            "before": round(load_before, 2),
            "peak_during_load": round(busy.load_peak, 2),
            "after": round(os.getloadavg()[0], 2),
        },
        "cpu_seconds": {"idle": idle.cpu.report(), "load": busy.cpu.report()},
        "web_cpu_ms_per_request": {
            "idle": round(idle.cpu.used["web"] * 1000 / _page_views(idle.samples), 1),
            "load": round(busy.cpu.used["web"] * 1000 / _page_views(busy.samples), 1),
        },
        "target_p95_ms": TARGET_P95_MS,
        "pages": [
            {"page": label, "phase": name, **_summary(phase.samples[label])}
            for label, _, _ in PAGES
            for name, phase in (("idle", idle), ("load", busy))
        ],
    }


def idle_phase(client: Client, rounds: int, groups: dict[str, list[int]]) -> Phase:
    print(f"idle: {rounds} rounds", file=sys.stderr, flush=True)
    phase = Phase({}, CpuMeter(groups))
    for _ in range(rounds):
        measure_round(client, phase.samples)
    phase.cpu.stop()
    return phase


def load_phase(
    client: Client, load: Load, longest: float, groups: dict[str, list[int]]
) -> tuple[Phase, float]:
    """Rounds from the first start until the engine has nothing left to run (or ``longest`` s)."""
    phase = Phase({}, CpuMeter(groups))
    began = time.monotonic()
    load.start()
    print(f"load: starting {load.count} executions", file=sys.stderr, flush=True)
    last_check = 0.0
    while time.monotonic() - began < longest:
        measure_round(client, phase.samples)
        phase.load_peak = max(phase.load_peak, os.getloadavg()[0])
        load.check()
        if load.starting or time.monotonic() - last_check < 2:
            continue
        last_check = time.monotonic()
        if load.busy() == 0:
            break
    seconds = time.monotonic() - began
    phase.cpu.stop(starter_cpu=load.cpu.value)
    if load.process is not None:
        load.process.join()
    load.check()
    return phase, seconds


# --- where the CPU went ---------------------------------------------------------------------


class CpuMeter:
    """CPU seconds of each process group (a process and its descendants) over a phase, from /proc,
    with the bench client's own and the whole machine's (what other users ran shows there)."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.began = time.monotonic()
        self.start = _group_cpu(groups)
        self.client = time.process_time()
        self.machine = _machine_busy_seconds()
        self.used: dict[str, float] = {}
        self.seconds = 0.0

    def stop(self, *, starter_cpu: float | None = None) -> None:
        end = _group_cpu(self.groups)
        self.seconds = time.monotonic() - self.began
        # A process that ended meanwhile takes its CPU with it (never below zero).
        self.used = {name: max(0.0, end[name] - self.start[name]) for name in self.groups}
        if starter_cpu is not None:
            self.used["starter"] = starter_cpu
        self.used["bench client"] = time.process_time() - self.client
        self.used["machine (all users)"] = _machine_busy_seconds() - self.machine

    def report(self) -> dict[str, Any]:
        ours = sum(value for name, value in self.used.items() if name != "machine (all users)")
        return {
            "phase_seconds": round(self.seconds, 1),
            "capacity_cpu_seconds": round(self.seconds * (os.cpu_count() or 1), 1),
            **{name: round(value, 1) for name, value in self.used.items()},
            "others (not this bench)": round(max(0.0, self.used["machine (all users)"] - ours), 1),
        }


def _group_cpu(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of each group's processes and their live descendants."""
    cpu, children = cluster.process_table()
    return {
        name: sum(cpu.get(pid, 0.0) for pid in cluster.descendants(roots, children))
        for name, roots in groups.items()
    }


def _machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (every CPU, every user) since boot."""
    with open("/proc/stat") as stat:
        values = [int(value) for value in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _page_views(samples: dict[str, list[float]]) -> int:
    """Requests for pages (the control's, well under a millisecond of CPU each, are not counted)."""
    return sum(len(times) for label, times in samples.items() if not label.startswith("control"))


# --- the report -------------------------------------------------------------------------------


def _summary(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "requests": len(ordered),
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)], 1),
        "max_ms": round(ordered[-1], 1),
    }


def render(report: dict[str, Any]) -> str:
    load, machine, average = report["load"], report["machine"], report["load_average"]
    outcome = ", ".join(f"{count} {status}" for status, count in sorted(load["outcome"].items()))
    lines = [
        f"{report['date']}; {machine['cpus']} CPUs, {machine['platform']}, {machine['postgres']}, "
        f"Python {machine['python']}; {report['seeded_executions']:,} executions seeded.",
        f"Load: {load['executions']:,} executions started in {load['started_in_seconds']} s, phase "
        f"{load['phase_seconds']} s; at its end: {outcome}. {load['workers']} workers x "
        f"{load['threads_per_worker']} threads + scheduler. Load average {average['before']} before, "
        f"{average['peak_during_load']} peak, {average['after']} after.",
        "",
        "| page | phase | requests | p50 ms | p95 ms | max ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in report["pages"]:
        p95 = f"{row['p95_ms']}" + (" **over**" if row["p95_ms"] > report["target_p95_ms"] else "")
        cells = (row["page"], row["phase"], row["requests"], row["p50_ms"], p95, row["max_ms"])
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    per_request = report["web_cpu_ms_per_request"]
    lines += [
        "",
        f"Web process CPU per page view: {per_request['idle']} ms idle, {per_request['load']} ms under load.",
        "",
        "| CPU seconds | idle phase | load phase |",
        "|---|---:|---:|",
    ]
    idle, busy = report["cpu_seconds"]["idle"], report["cpu_seconds"]["load"]
    for name in busy:
        lines.append(f"| {name} | {idle.get(name, '')} | {busy[name]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
