"""Worker processes against broker and worker faults: Redis restarts, a worker killed mid bulk job.

Real `durable worker` and `durable scheduler` processes on the session's PostgreSQL.
The Redis restarts happen on a Redis of the test's own (the session's serves every
other test); its executions are started without hints (no broker in this process),
so the scheduler dispatches them through that Redis, as it does after any lost hint.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
import pytest
from django.contrib.auth.models import User
from django.test import override_settings

from durable_console.celery import WorkerSupervisor
from examples import ledger
from examples.ledger import count
from executions import bulk_jobs
from executions.audit import Actor
from executions.engine.functions import function_register
from executions.models import AuditEntry, BulkJob, Execution
from tests import console_handlers
from tests.conftest import SpawnedProcess, database_url_for_children
from tests.e2e_handlers import slow_steps
from tests.engine_driver import handler_path, start
from tests.polling import wait_until
from tests.servers import RedisServer, find_redis_server, redis_ping, start_redis

MANAGE = [sys.executable, "manage.py", "durable"]
CONNECTED = "Connected to"


# --- Redis restarted under load --------------------------------------------------------------


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with start_redis() as server:
        yield server


def restart_redis(server: RedisServer) -> None:
    """Kill the server (no persistence: queued hints are lost) and start it on the same port."""
    assert server.proc is not None
    server.proc.kill()
    server.proc.wait(timeout=10)
    with open(server.log_path, "ab") as log:
        server.proc = subprocess.Popen(
            [
                *(find_redis_server(), "--port", str(server.port), "--bind", server.host),
                *("--save", "", "--appendonly", "no", "--dir", str(server.directory)),
            ],
            cwd=server.directory,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_until(lambda: redis_ping(server.host, server.port), timeout=10, message="redis back up")


def spawn_workers(spawn: Callable[..., SpawnedProcess], env: dict[str, str], argv: Sequence[str]) -> list:
    workers = [spawn([*MANAGE, "worker", *argv], env=env, name=f"worker-{n}") for n in range(2)]
    for worker in workers:
        worker.wait_for_log("ready", timeout=60)
    return workers


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_workers_survive_redis_restarts_under_load(
    requires_postgresql: None, own_redis: RedisServer, spawn_process: Callable[..., SpawnedProcess]
) -> None:
    function_register(name="slow-steps", handler=handler_path(slow_steps))
    env = {"CELERY_BROKER_URL": own_redis.url}
    argv = ["--pool", "threads", "--concurrency", "4", "--loglevel", "info"]
    workers = spawn_workers(spawn_process, env, argv)
    spawn_process([*MANAGE, "scheduler"], env=env, name="scheduler")
    keys: list[str] = []

    def start_batch(size: int = 3) -> None:
        batch = [f"redis-{len(keys) + n}" for n in range(size)]
        with override_settings(CELERY_BROKER_URL=""):  # no hints from here: the scheduler sends them
            for key in batch:
                start("slow-steps", {"key": key, "sleep": 2})
        keys.extend(batch)
        wait_until(lambda: count("e2e", "slow-started") == len(keys), timeout=30, message="steps not running")

    # Each restart hits workers with handlers running (their acks_late messages unacknowledged)
    # and a free thread each (so they are waiting on Redis for more): how the workers died.
    recoveries: list[str] = []
    for _ in range(3):
        start_batch()
        connects = [w.log_text().count(CONNECTED) for w in workers]
        killed = time.monotonic()
        restart_redis(own_redis)
        back = time.monotonic()
        for worker, seen in zip(workers, connects, strict=True):
            worker.wait_until(lambda w=worker, n=seen: w.log_text().count(CONNECTED) > n, 30, "reconnect")
        reconnected = time.monotonic()
        recoveries.append(
            f"redis back {back - killed:.2f} s, workers reconnected {reconnected - killed:.2f} s"
        )
    start_batch()  # work after the last restart runs too, with no manual step
    print("redis restarts (from the kill):", "; ".join(recoveries))  # the README's figures (-s)

    wait_until(
        lambda: Execution.objects.filter(status="SUCCEEDED").count() == len(keys),
        timeout=60,
        message="not every execution completed",
    )
    assert all(w.is_running() and "Unrecoverable error" not in w.log_text() for w in workers)
    assert [count("e2e", "slow-finished", key) for key in keys] == [1] * len(keys)  # none ran twice
    ledger.close()
    for worker in workers:  # asked to stop, a worker stops: the command does not start it again
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.wait_exit(timeout=30) == 0
    assert all("restarting it" not in w.log_text() for w in workers)  # and no restart was needed


# --- a worker killed in the middle of a bulk stop ----------------------------------------------


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_bulk_stop_whose_worker_is_killed_is_resumed_and_acts_once_per_execution(
    requires_postgresql: None, redis_url: str, spawn_process: Callable[..., SpawnedProcess]
) -> None:
    function_register(name="approval", handler=handler_path(console_handlers.approval))
    env = {"DURABLE_BULK_STALE_SECONDS": "2"}
    workers = spawn_workers(spawn_process, env, ["--pool", "solo", "--loglevel", "info"])
    spawn_process([*MANAGE, "scheduler"], env=env, name="scheduler")
    targets = [start("approval") for _ in range(60)]
    ids = [e.pk for e in targets]
    wait_until(
        lambda: Execution.objects.filter(pk__in=ids, invocation_count=1, lease_owner="").count() == 60,
        timeout=60,
        message="the executions never parked on their callbacks",
    )
    operator = User.objects.create_user("bulk-operator")

    # Hold one execution of the second chunk, so the runner stops there with 20 done, 9 more
    # stopped in its open transaction: the kill lands mid-chunk.
    with psycopg.connect(database_url_for_children()) as holder:
        holder.execute("SELECT id FROM executions_execution WHERE id = %s FOR UPDATE", [ids[29]])
        job = bulk_jobs.bulk_job_create(
            Actor.console(operator), action="stop", scope="selection", target_ids=ids, reason="drill"
        )
        wait_until(lambda: runner_blocked(holder), timeout=30, message="the runner never reached the lock")
        runner = BulkJob.objects.get(pk=job.pk)
        assert (runner.status, runner.processed, runner.runs) == ("RUNNING", 20, 1)
        victim = next(w for w in workers if f":{w.pid}:" in runner.claimed_by)
        victim.signal(signal.SIGKILL)
        victim.wait_exit()
        holder.rollback()

    survivor = next(w for w in workers if w is not victim)
    job = wait_until(
        lambda: (j := BulkJob.objects.get(pk=job.pk)).is_finished and j, timeout=60, message="job never done"
    )
    assert (job.status, job.processed, job.succeeded, job.skipped, job.failed) == ("DONE", 60, 60, 0, 0)
    assert job.runs == 2 and f":{survivor.pid}:" in job.claimed_by and job.problems == []
    assert set(Execution.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"STOPPED"}
    stops = list(AuditEntry.objects.filter(action="execution.stop").values_list("target", flat=True))
    assert sorted(stops) == sorted(e.arn for e in targets)  # each stopped once, audited once
    assert "resumed by" in survivor.log_text()


def runner_blocked(holder: psycopg.Connection) -> bool:
    """Whether another session waits for a row lock (the runner, on the held execution)."""
    with psycopg.connect(database_url_for_children(), autocommit=True) as probe:
        (waiting,) = probe.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> %s",
            [holder.info.backend_pid],
        ).fetchone()
    return waiting > 0


# --- the worker command restarts Celery's worker ----------------------------------------------


class FakeCelery:
    """Celery's ``app.start`` as the supervisor sees it: one exit code per worker run."""

    def __init__(self, codes: list[int], supervisor: Callable[[], WorkerSupervisor]) -> None:
        self.codes = codes
        self.runs: list[list[str]] = []
        self.supervisor = supervisor
        self.stop_on_run: int | None = None

    def __call__(self, argv: Sequence[str]) -> int:
        self.runs.append(list(argv))
        if self.stop_on_run == len(self.runs):
            self.supervisor().request_stop(sig="SIGTERM")  # what worker_shutting_down delivers
        return self.codes[len(self.runs) - 1]


def supervised(codes: list[int], **kwargs: Any) -> tuple[WorkerSupervisor, FakeCelery, list[float]]:
    pauses: list[float] = []
    holder: list[WorkerSupervisor] = []
    celery = FakeCelery(codes, lambda: holder[0])
    supervisor = WorkerSupervisor(celery, **kwargs)
    supervisor.stop_requested.wait = lambda timeout: bool(pauses.append(timeout))  # type: ignore[method-assign]
    holder.append(supervisor)
    return supervisor, celery, pauses


def test_a_worker_that_exits_on_its_own_is_started_again_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    supervisor, celery, pauses = supervised([1, 1, 1, 1, 0])
    celery.stop_on_run = 5
    assert supervisor.run(["--pool=threads"]) == 0
    assert celery.runs == [["--pool=threads"]] * 5
    assert pauses == [1, 2, 4, 8]  # doubling, from 1 s
    assert supervisor.restarts == 4
    assert "celery worker exited on its own (exit code 1); restarting it in 1 s (restart 1)" in caplog.text


def test_a_worker_stopped_by_a_signal_is_not_started_again() -> None:
    supervisor, celery, pauses = supervised([0])
    celery.stop_on_run = 1
    assert supervisor.run([]) == 0
    assert len(celery.runs) == 1 and pauses == []


def test_a_stop_during_the_pause_ends_the_loop() -> None:
    supervisor, celery, _ = supervised([1, 1])
    supervisor.stop_requested.wait = lambda timeout: True  # type: ignore[method-assign]
    assert supervisor.run([]) == 1
    assert len(celery.runs) == 1


def test_the_backoff_starts_over_after_a_healthy_run() -> None:
    moments = iter([0, 5, 10, 15, 20, 200, 300, 310])  # the third worker ran 180 s
    supervisor, _, pauses = supervised([1, 1, 1, 1], clock=lambda: next(moments), max_restarts=3)
    assert supervisor.run([]) == 1
    assert pauses == [1, 2, 1]
