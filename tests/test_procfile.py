"""The Procfile is the production recipe: honcho runs it against PostgreSQL and Redis (issue 13).

The stack gets a database of its own on the session's PostgreSQL (so the release
step really creates the schema) and a Redis database of its own. It is run the
way the README tells an operator to: the release step alone with ``honcho run``
(``honcho start`` stops every process as soon as one exits, a finished release
step included), then ``honcho start web worker scheduler``. Demo executions are
started through the web process's Lambda API and run to the end. Then, with an
execution parked on a durable wait and an approval waiting for its reviewer, the
worker process is killed with SIGKILL while a step runs; honcho stops the other
two (what it does when any process exits), the stack is started again, and the
killed step runs again once, the parked wait fires and the approval still waits.

The kill lands where nothing else is in flight on purpose: what a kill inside a
plain chained call or an at-most-once step leaves (a failure saying it may or may
not have run, by design) is tested on its own in ``test_engine_faults`` and
``test_e2e_workers``; here every count in ``/metrics`` can then be exact.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
import redis
from botocore.config import Config
from honcho.environ import parse_procfile

from tests.conftest import REPO_ROOT, SpawnedProcess, child_process_env
from tests.e2e_handlers import slow_steps
from tests.engine_driver import handler_path
from tests.fault_cluster import ClusterDb
from tests.metrics_support import Samples, parse, value
from tests.polling import WaitTimeout
from tests.servers import free_port
from tests.services_plugin import TestServices

pytestmark = pytest.mark.e2e

PROCFILE = REPO_ROOT / "Procfile"
REDIS_DB = 12  # the stack's own Redis database: no hints left over from other tests
LEASE_SECONDS = "3"  # a killed worker's executions are taken over after this
SLOW_SECONDS = 4  # how long the step the worker is killed in sleeps

# Demo executions that end on their own within seconds, each showing something else
# (retries after injected faults, compensation-free happy paths, chained invokes, map,
# durable waits). They run to the end before the kill.
RUNS: dict[str, dict[str, Any]] = {
    "order-processing": {"order_id": "pf-op"},
    "distributed-transaction": {
        "order_id": "pf-dt",
        "faults": {"payment.charge": 1},
        "retry_delay_seconds": 1,
    },
    "booking": {"booking_id": "pf-bk", "faults": {"booking.reserve_room": 1}},
    "batch-processing": {"job_id": "pf-bp", "record_count": 20, "batch_size": 5},
    "function-chaining": {"order_id": "pf-fc"},
    "data-pipeline": {
        "job_id": "pf-dp",
        "record_count": 20,
        "batch_size": 10,
        "rate_limit_wait_seconds": 1,
        "off_peak_wait_seconds": 1,
    },
}
# Parked on a durable wait across the kill: the timer fires after the restart. Long
# enough that it cannot fire before the kill, even on a slow machine.
PARKED_WAIT_SECONDS = 10
PARKED = {
    "job_id": "pf-parked",
    "record_count": 4,
    "rate_limit_wait_seconds": PARKED_WAIT_SECONDS,
    "off_peak_wait_seconds": 0,  # skipped
}
# The step the worker is killed in.
SLOW = {"key": "pf-slow", "sleep": SLOW_SECONDS}


# `durable demo-setup` (the demo functions, the admin, a development API key kept in
# DURABLE_VAR_DIR) and the slow step's function, in one process: each start costs seconds.
SETUP = (
    "from durable_console.bootstrap import demo_setup\n"
    "from executions.engine.functions import function_register\n"
    "print(*demo_setup(), sep='\\n')\n"
    f"function_register(name='slow-steps', handler={handler_path(slow_steps)!r})\n"
)


@dataclass
class Stack:
    """The stack's database, environment and the web port honcho gives ``web``."""

    db: ClusterDb
    env: dict[str, str]
    port: int
    var_dir: Path
    env_file: Path

    def honcho(self, *args: str) -> list[str]:
        # An empty env file: a developer's .env must not redirect the test's stack.
        return [sys.executable, "-m", "honcho", "-f", str(PROCFILE), "-e", str(self.env_file), *args]


@pytest.fixture
def stack(
    requires_postgresql: None, services: TestServices, redis_url: str, tmp_path: Path
) -> Iterator[Stack]:
    name = f"procfile_{os.getpid()}"
    server_url = services.database_url
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    broker = f"{redis_url.rsplit('/', 1)[0]}/{REDIS_DB}"
    redis.Redis.from_url(broker).flushdb()
    database_url = f"{server_url.rsplit('/', 1)[0]}/{name}"
    var_dir = tmp_path / "var"
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker,
        "REDIS_URL": broker,
        "DURABLE_VAR_DIR": str(var_dir),
        "DURABLE_LEASE_SECONDS": LEASE_SECONDS,
        "DURABLE_INVOCATION_RETRY_DELAY_SECONDS": "0.5",
        # The stack's processes only, so its metrics can be counted exactly.
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        # The Procfile says `python`: this virtualenv's.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    try:
        yield Stack(ClusterDb(database_url), env, free_port(), var_dir, env_file)
    finally:
        redis.Redis.from_url(broker).flushdb()
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def start_honcho(spawn_process: Callable[..., SpawnedProcess]) -> Iterator[Callable[..., SpawnedProcess]]:
    """``honcho start`` in its own process group; what it started is killed at teardown too.

    honcho starts each process in a session of its own, so stopping honcho's group
    alone could leave them running if honcho itself had to be killed.
    """
    started: list[SpawnedProcess] = []

    def start(stack: Stack, *processes: str) -> SpawnedProcess:
        argv = stack.honcho("start", "--no-colour", "-p", str(stack.port), *processes)
        honcho = spawn_process(argv, env=stack.env, name=f"honcho-{len(started) + 1}")
        started.append(honcho)
        return honcho

    yield start
    for honcho in started:
        honcho.stop(timeout=15)  # SIGTERM: honcho stops its processes, then itself
        for group in started_pids(honcho).values():
            _kill_group(group)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def started_pids(honcho: SpawnedProcess) -> dict[str, int]:
    """honcho's "web.1 started (pid=N)": N leads a session of its own (the shell running the line)."""
    return {name: int(pid) for name, pid in re.findall(r"(\S+) started \(pid=(\d+)\)", honcho.log_text())}


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # field 4, after the command name
            found.append(int(entry.name))
    return found


def run_release_step(stack: Stack) -> None:
    """The Procfile's ``release`` line, alone, the way a platform runs it once per deploy."""
    release = parse_procfile(PROCFILE.read_text()).processes["release"]
    done = run(stack, "run", *shlex.split(release))
    assert "Applying executions.0001_initial" in done, done


def run(stack: Stack, *args: str) -> str:
    result = subprocess.run(
        stack.honcho(*args),
        cwd=REPO_ROOT,
        env=child_process_env(stack.env),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def lambda_client(stack: Stack) -> Any:
    key = json.loads((stack.var_dir / "dev-access-key.json").read_text())  # written by demo-setup
    return boto3.client(
        "lambda",
        endpoint_url=f"http://127.0.0.1:{stack.port}",
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        config=Config(retries={"total_max_attempts": 1}, read_timeout=30),
    )


def web_ready(honcho: SpawnedProcess, stack: Stack) -> None:
    honcho.wait_for_log(f"Durable Console on http://0.0.0.0:{stack.port}/", timeout=90)


def ended(stack: Stack, arns: list[str]) -> dict[str, tuple[str, Any]]:
    found = stack.db.rows(
        "SELECT arn, status, result FROM executions_execution WHERE arn = ANY(%s) AND ended_at IS NOT NULL",
        (arns,),
    )
    return {arn: (status, json.loads(result) if result else None) for arn, status, result in found}


def unfinished(stack: Stack) -> list[tuple[Any, ...]]:
    """What an execution that did not end was doing: its function, state and open operations."""
    return stack.db.rows(
        "SELECT f.name, e.status, e.needs_invocation, e.invocation_due_at, e.dispatched_at,"
        " e.lease_owner, e.lease_expires_at, e.wake_at, e.invocation_count,"
        " (SELECT array_agg(o.type || ' ' || o.name || ' ' || o.status) FROM executions_operation o"
        "  WHERE o.execution_id = e.id AND o.status NOT IN ('SUCCEEDED', 'FAILED'))"
        " FROM executions_execution e JOIN executions_function f ON f.id = e.function_id"
        " WHERE e.ended_at IS NULL"
    )


def ledger(stack: Stack, service: str, action: str, key: str) -> int:
    return stack.db.value(
        "SELECT count(*) FROM examples_ledgerentry WHERE service = %s AND action = %s AND key = %s",
        (service, action, key),
    )


def test_the_procfile_runs_the_demos_and_a_killed_worker_loses_nothing(
    stack: Stack, start_honcho: Callable[..., SpawnedProcess]
) -> None:
    run_release_step(stack)
    assert "Registered" in run(stack, "run", "python", "manage.py", "shell", "-c", SETUP)

    first = start_honcho(stack, "web", "worker", "scheduler")
    web_ready(first, stack)
    api = lambda_client(stack)
    demos = {name: start(api, name, payload) for name, payload in RUNS.items()}
    results = wait_for_ends(stack, first, demos, "every demo execution to end")
    assert {name: status for name, (status, _) in results.items()} == dict.fromkeys(RUNS, "SUCCEEDED")
    assert ledger(stack, "payment", "charge", "pf-dt") == 1  # its retried charge went through once
    assert ledger(stack, "records", "process", "pf-bp") == 4  # 20 records in batches of 5

    # An approval waiting for its reviewer and a pipeline parked on a durable wait: neither
    # holds a worker. Then the worker is killed while the slow step runs (its invocation
    # holds a lease): SIGKILL, no chance to clean up.
    approval = start(api, "document-approval", {"document_id": "pf-doc"})
    first.wait_until(lambda: open_callbacks(stack, approval), 60, "the approval's callback")
    parked = start(api, "data-pipeline", PARKED)
    first.wait_until(lambda: started_waits(stack, parked), 60, "the parked pipeline's wait")
    slow = start(api, "slow-steps", SLOW)
    first.wait_until(lambda: ledger(stack, "e2e", "slow-started", "pf-slow") == 1, 90, "the slow step")
    shell = started_pids(first)["worker.1"]
    (worker,) = children_of(shell)  # the shell honcho started runs the Procfile's line
    os.kill(worker, signal.SIGKILL)
    # honcho stops everything once one process exits: web and scheduler get SIGTERM.
    first.wait_exit(timeout=30)
    assert "sending SIGTERM to web.1" in first.log_text()
    assert "sending SIGTERM to scheduler.1" in first.log_text()
    assert ledger(stack, "e2e", "slow-finished", "pf-slow") == 0  # it was killed mid-step
    assert not ended(stack, [parked])  # the kill came before its timer

    second = start_honcho(stack, "web", "worker", "scheduler")
    results = wait_for_ends(stack, second, {"slow": slow, "parked": parked}, "the slow and parked executions")
    assert results["slow"] == ("SUCCEEDED", ["first", "slow", "last"])
    assert results["parked"][0] == "SUCCEEDED"
    assert ledger(stack, "e2e", "slow-started", "pf-slow") == 2  # attempt 1 killed, attempt 2 ran
    assert ledger(stack, "e2e", "slow-finished", "pf-slow") == 1
    assert open_callbacks(stack, approval) == 1  # still waiting for its reviewer
    web_ready(second, stack)
    assert api.get_durable_execution(DurableExecutionArn=demos["order-processing"])["Status"] == "SUCCEEDED"
    check_metrics(stack)


def start(api: Any, function: str, payload: dict[str, Any]) -> str:
    response = api.invoke(FunctionName=function, InvocationType="Event", Payload=json.dumps(payload))
    return str(response["DurableExecutionArn"])


def wait_for_ends(
    stack: Stack, honcho: SpawnedProcess, arns: dict[str, str], message: str
) -> dict[str, tuple[str, Any]]:
    """Each execution's (status, result) once all of them ended; the open ones on a timeout."""
    try:
        done = honcho.wait_until(
            lambda: len(found := ended(stack, list(arns.values()))) == len(arns) and found,
            timeout=120,
            message=message,
        )
    except WaitTimeout as timeout:
        raise AssertionError(f"{timeout}\nstill open: {unfinished(stack)}") from None
    return {name: done[arn] for name, arn in arns.items()}


def check_metrics(stack: Stack) -> None:
    """One scrape of the second web process adds up every process of both runs: the web
    processes (API requests, starts), the killed worker and the new one with their sandbox
    children (invocations, checkpoints), the schedulers (timers). Nothing but the slow
    step was in flight when the worker was killed, so every count is exact."""
    samples = scrape(stack)
    executions = stack.db.value("SELECT count(*) FROM executions_execution")  # chained children too
    succeeded = stack.db.value("SELECT count(*) FROM executions_execution WHERE status = 'SUCCEEDED'")
    assert succeeded == executions - 1  # all but the approval, which waits for its reviewer
    api_starts = len(RUNS) + 3  # the demos, the approval, the parked pipeline, the slow steps

    by_function = stack.db.rows(
        "SELECT f.name, count(*) FROM executions_execution e"
        " JOIN executions_function f ON f.id = e.function_id GROUP BY f.name"
    )
    started = {labels["function"]: v for labels, v in samples["durable_executions_started_total"]}
    assert started == {function: float(count) for function, count in by_function}
    assert value(samples, "durable_executions_finished_total") == succeeded
    assert value(samples, "durable_executions_finished_total", status="SUCCEEDED") == succeeded
    assert value(samples, "durable_api_requests_total", operation="Invoke", status="202") == api_starts
    assert value(samples, "durable_api_requests_total", operation="GetDurableExecution", status="200") == 1
    assert value(samples, "durable_api_request_duration_seconds_count", operation="Invoke") == api_starts

    invocations = value(samples, "durable_invocations_total")
    assert invocations >= executions  # every execution ran at least once; some suspended and resumed
    assert value(samples, "durable_invocation_duration_seconds_count") == invocations
    # The killed run never returned, so only the second one counts.
    assert value(samples, "durable_invocations_total", function="slow-steps", outcome="SUCCEEDED") == 1
    # One invocation returned SUCCEEDED per execution, and the two plain chained targets did.
    assert value(samples, "durable_invocations_total", outcome="SUCCEEDED") == succeeded + 2
    assert value(samples, "durable_invocations_total", function="chain-inventory") == 1
    assert value(samples, "durable_checkpoint_duration_seconds_count", via="sdk") > invocations
    assert value(samples, "durable_checkpoint_operations_total", type="STEP", action="SUCCEED") >= 20
    # data-pipeline's two waits, and the parked pipeline's one (its off-peak wait is 0).
    assert value(samples, "durable_checkpoint_operations_total", type="WAIT", action="START") == 3
    # Those three waits, the retries of booking's and distributed-transaction's steps.
    assert value(samples, "durable_timer_lateness_seconds_count") >= 5

    assert value(samples, "durable_worker_threads") == 4  # the live worker's; the killed one's forgotten
    assert 0 <= value(samples, "durable_worker_busy_ratio") <= 1
    assert value(samples, "durable_open_callbacks") == 1
    assert value(samples, "durable_open_callbacks_expiring_soon") == 0  # 24 h to answer
    assert value(samples, "durable_due_work_oldest_age_seconds", kind="timer") >= 0
    assert value(samples, "durable_database_up") == 1


def started_waits(stack: Stack, arn: str) -> int:
    return stack.db.value(
        "SELECT count(*) FROM executions_operation o JOIN executions_execution e ON e.id = o.execution_id"
        " WHERE e.arn = %s AND o.type = 'WAIT' AND o.status = 'STARTED'",
        (arn,),
    )


def open_callbacks(stack: Stack, arn: str) -> int:
    return stack.db.value(
        "SELECT count(*) FROM executions_operation o JOIN executions_execution e ON e.id = o.execution_id"
        " WHERE e.arn = %s AND o.type = 'CALLBACK' AND o.status = 'STARTED'",
        (arn,),
    )


def scrape(stack: Stack) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.port}/metrics", timeout=30) as response:
        return parse(response.read().decode())
