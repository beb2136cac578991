"""PostgreSQL restarts under real worker, scheduler and web processes (issue 9).

The cluster runs on a PostgreSQL of its own (``tests.fault_cluster``), so it can
be restarted without breaking the session's database: two Celery worker
processes (``--pool threads --concurrency 4``, each thread supervising a sandbox
child), a scheduler and a web process, with short leases. The database is
restarted the two ways an operator or a crash does it: fast (sessions are
ended, clients see 57P01) and immediate (everything drops, crash recovery).

What must hold: every execution ends with the result the demos give on the
SDK's reference service, the ledger shows exactly the effects (and attempts)
the reference run made, no Celery task fails, and a handler whose step is
running while the database restarts keeps its lease: no second invocation
starts while it runs.

The time from each restart to the next committed checkpoint is printed
(``-s`` shows it); the README quotes it.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
from aws_durable_execution_sdk_python_testing.runner import DurableFunctionTestRunner
from botocore.config import Config

from examples import ledger
from examples.models import LedgerEntry
from examples.registry import DEMO_FUNCTIONS, get
from tests.conftest import REPO_ROOT, SpawnedProcess, child_process_env
from tests.e2e_handlers import slow_steps
from tests.engine_driver import handler_path
from tests.fault_cluster import ClusterDb, Restart, now, restart_postgres
from tests.polling import wait_until
from tests.servers import PostgresServer, free_port, start_postgres

pytestmark = pytest.mark.e2e

MANAGE = [sys.executable, "manage.py", "durable"]
LEASE_SECONDS = 3
SLOW_FUNCTION = "slow-steps"
SLOW_HANDLER = handler_path(slow_steps)  # a step that sleeps as long as the input says
REDIS_DB = 9  # the cluster's own Redis database: no hints left over from other tests
REFERENCE_TIME = "2026-01-01T00:00:00+00:00"  # data-pipeline's load window, fixed
STATUSES = {"RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "STOPPED"}


@dataclass
class Cluster:
    server: PostgresServer
    db: ClusterDb
    api: Any  # a boto3 Lambda client of the web process, without retries
    processes: list[SpawnedProcess] = field(default_factory=list)

    def logs(self) -> dict[str, str]:
        return {process.name: process.log_text() for process in self.processes}

    def restart(self, mode: str, while_down: Callable[[], object] | None = None) -> Restart:
        return restart_postgres(self.server, mode, while_down=while_down)


@pytest.fixture(scope="module")
def cluster(
    requires_postgresql: None, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    # fsync off for speed, but every COMMIT written to the kernel before it is acknowledged
    # (synchronous_commit on): an immediate shutdown must not lose an acknowledged commit.
    server = start_postgres(fsync=False, settings={"synchronous_commit": True}, dbname="durable")
    processes: list[SpawnedProcess] = []
    try:
        broker = f"{redis_url.rsplit('/', 1)[0]}/{REDIS_DB}"
        redis.Redis.from_url(broker).flushdb()
        env = child_process_env(
            {
                "DATABASE_URL": server.url,
                "CELERY_BROKER_URL": broker,
                "REDIS_URL": broker,
                "DURABLE_LEASE_SECONDS": str(LEASE_SECONDS),
                "DURABLE_INVOCATION_RETRY_DELAY_SECONDS": "0.5",
            }
        )
        key = _set_up_database(env)
        log_dir = tmp_path_factory.mktemp("fault-cluster")
        port = free_port()
        worker = [*MANAGE, "worker", "--pool", "threads", "--concurrency", "4", "--loglevel", "info"]
        for name, argv in [
            ("worker-1", worker),
            ("worker-2", worker),
            ("scheduler", [*MANAGE, "scheduler"]),
            ("web", [*MANAGE, "serve", "--no-embedded", "--port", str(port)]),
        ]:
            processes.append(_spawn(name, argv, env, log_dir))
        for process in processes[:2]:
            process.wait_for_log("ready", timeout=60)
        processes[3].wait_for_log(f"http://127.0.0.1:{port}/", timeout=60)
        api = boto3.client(
            "lambda",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
            config=Config(retries={"total_max_attempts": 1}, read_timeout=30),
        )
        yield Cluster(server, ClusterDb(server.url), api, processes)
    finally:
        for process in reversed(processes):
            process.stop()
        server.stop()


def _set_up_database(env: dict[str, str]) -> dict[str, str]:
    setup = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fault_cluster",
            "setup",
            json.dumps({SLOW_FUNCTION: handler_path(slow_steps)}),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert setup.returncode == 0, setup.stderr
    return json.loads(setup.stdout.strip().splitlines()[-1])


def _spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> SpawnedProcess:
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return SpawnedProcess(name, argv, log_path, proc)


# --- the soak ------------------------------------------------------------------------------

SOAK_KINDS: list[tuple[str, Callable[[str], dict[str, Any]]]] = [
    ("order-processing", lambda key: {"order_id": key}),
    (
        "distributed-transaction",
        lambda key: {"order_id": key, "faults": {"payment.charge": 1}, "retry_delay_seconds": 1},
    ),
    ("booking", lambda key: {"booking_id": key, "faults": {"booking.reserve_room": 1}}),
    ("batch-processing", lambda key: {"job_id": key, "record_count": 20, "batch_size": 5}),
    ("function-chaining", lambda key: {"order_id": key}),
    (
        "data-pipeline",
        lambda key: {
            "job_id": key,
            "record_count": 20,
            "batch_size": 10,
            "rate_limit_wait_seconds": 1,
            "off_peak_wait_seconds": 1,
            "reference_time": REFERENCE_TIME,
        },
    ),
]


def soak_runs(count: int) -> list[tuple[str, dict[str, Any]]]:
    """``count`` demo executions, the kinds taking turns, each with a key of its own."""
    return [
        (name, make(f"soak-{index}"))
        for index, (name, make) in ((i, SOAK_KINDS[i % len(SOAK_KINDS)]) for i in range(count))
    ]


class ReferenceResults(threading.Thread):
    """The same runs on the SDK's reference service, in this process, while the cluster works.

    Their ledger goes to the session's database, the cluster's to its own; the
    two must match entry for entry.
    """

    def __init__(self, runs: list[tuple[str, dict[str, Any]]]) -> None:
        super().__init__(name="reference-runs", daemon=True)
        self.runs = runs
        self.results: list[tuple[str, Any]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for name, payload in self.runs:
                with _reference_runner(get(name).load()) as runner:
                    outcome = runner.run(input=json.dumps(payload), execution_timeout=30)
                self.results.append((outcome.status.name, json.loads(outcome.result or "null")))
        except BaseException as error:  # reported by the test thread
            self.error = error
        finally:
            ledger.close()


def _reference_runner(handler: Callable[..., Any]) -> DurableFunctionTestRunner:
    runner = DurableFunctionTestRunner(handler=handler, poll_interval=0.05)
    for function in DEMO_FUNCTIONS:
        if function.name.startswith("chain-"):
            if function.durable:
                runner.register_durable_function(function.name, function.load())
            else:
                runner.register_function(function.name, function.load())
    return runner


def start(cluster: Cluster, name: str, payload: dict[str, Any]) -> str:
    response = cluster.api.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps(payload))
    assert response["StatusCode"] == 202
    return response["DurableExecutionArn"]


def ended(cluster: Cluster, arns: list[str]) -> dict[str, tuple[str, Any]]:
    found = cluster.db.rows(
        "SELECT arn, status, result FROM executions_execution WHERE arn = ANY(%s) AND ended_at IS NOT NULL",
        (arns,),
    )
    return {arn: (status, json.loads(result) if result else None) for arn, status, result in found}


def wait_ended(
    cluster: Cluster, arns: list[str], at_least: int, timeout: float
) -> dict[str, tuple[str, Any]]:
    return wait_until(
        lambda: (done := ended(cluster, arns)) and len(done) >= at_least and done,
        timeout=timeout,
        message=f"{at_least} of {len(arns)} executions to end",
    )


def next_checkpoint(cluster: Cluster, restart: Restart) -> datetime.datetime:
    """When the first checkpoint after ``restart`` was committed (a history event's time)."""
    return wait_until(
        lambda: cluster.db.value(
            "SELECT min(timestamp) FROM executions_historyevent WHERE timestamp > %s", (restart.ready,)
        ),
        timeout=30,
        message=f"a checkpoint after the {restart.mode} restart",
    )


def error_of(cluster: Cluster, arn: str) -> Any:
    return cluster.db.value("SELECT error FROM executions_execution WHERE arn = %s", (arn,))


def web_answers(cluster: Cluster, arn: str) -> str:
    """One API request, no retries: the web process serves the first request after a restart."""
    return cluster.api.get_durable_execution(DurableExecutionArn=arn)["Status"]


def report(restart: Restart, checkpoint: datetime.datetime) -> str:
    recovered = (checkpoint - restart.began).total_seconds()
    after_ready = (checkpoint - restart.ready).total_seconds()
    return (
        f"{restart.mode} restart: database down {restart.downtime:.2f} s; next checkpoint "
        f"{recovered:.2f} s after the restart began ({after_ready:.2f} s after the database was ready)"
    )


def ledger_counts(rows: list[tuple[str, str, str]]) -> Counter[tuple[str, str, str]]:
    return Counter(rows)


@pytest.mark.django_db(transaction=True)
def test_demo_soak_survives_fast_and_immediate_restarts(cluster: Cluster) -> None:
    runs = soak_runs(42)
    reference = ReferenceResults(runs)
    reference.start()
    arns = [start(cluster, name, payload) for name, payload in runs]

    wait_ended(cluster, arns, at_least=len(arns) // 4, timeout=60)
    fast = cluster.restart("fast")
    assert web_answers(cluster, arns[0]) in STATUSES
    fast_checkpoint = next_checkpoint(cluster, fast)
    wait_ended(cluster, arns, at_least=len(arns) // 2, timeout=60)
    immediate = cluster.restart("immediate")
    assert web_answers(cluster, arns[0]) in STATUSES
    immediate_checkpoint = next_checkpoint(cluster, immediate)
    results = wait_ended(cluster, arns, at_least=len(arns), timeout=60)

    reference.join(timeout=120)
    assert not reference.is_alive(), "the reference runs did not finish"
    assert reference.error is None, repr(reference.error)
    wrong = [
        (name, payload, actual, error_of(cluster, arn))
        for (name, payload), arn, expected in zip(runs, arns, reference.results, strict=True)
        if (actual := results[arn]) != expected
    ]
    assert not wrong
    cluster_ledger = ledger_counts(
        cluster.db.rows(
            "SELECT service, action, key FROM examples_ledgerentry WHERE key LIKE %s", ("%soak-%",)
        )
    )
    reference_ledger = ledger_counts(
        list(LedgerEntry.objects.filter(key__contains="soak-").values_list("service", "action", "key"))
    )
    assert cluster_ledger == reference_ledger
    for name, text in cluster.logs().items():
        assert "raised unexpected" not in text, name  # a Celery task failed
        assert "scheduler tick failed" not in text, name
    print()
    print(report(fast, fast_checkpoint))
    print(report(immediate, immediate_checkpoint))


# --- a step running while the database restarts --------------------------------------------


def lease_of(cluster: Cluster, arn: str) -> datetime.datetime | None:
    return cluster.db.value("SELECT lease_expires_at FROM executions_execution WHERE arn = %s", (arn,))


def renewed_after(cluster: Cluster, arn: str, moment: datetime.datetime) -> datetime.datetime:
    """The lease's new expiry once a renewal made after ``moment`` went through."""
    horizon = moment + datetime.timedelta(seconds=LEASE_SECONDS)
    return wait_until(
        lambda: (expiry := lease_of(cluster, arn)) is not None and expiry > horizon and expiry,
        timeout=LEASE_SECONDS * 2,
        interval=0.01,
        max_interval=0.02,
        message="a lease renewal",
    )


def ledger_count(cluster: Cluster, action: str, key: str) -> int:
    return cluster.db.value(
        "SELECT count(*) FROM examples_ledgerentry WHERE service = 'e2e' AND action = %s AND key = %s",
        (action, key),
    )


def failed_renewals(cluster: Cluster, arn: str) -> int:
    return sum(text.count(f"lease renewal for {arn} failed") for text in cluster.logs().values())


def until_a_renewal_fails(cluster: Cluster, arn: str) -> Callable[[], object]:
    failed = failed_renewals(cluster, arn)
    return lambda: wait_until(
        lambda: failed_renewals(cluster, arn) > failed, timeout=LEASE_SECONDS, message="a failed renewal"
    )


def test_a_step_running_across_restarts_keeps_its_lease(cluster: Cluster) -> None:
    arn = start(cluster, SLOW_FUNCTION, {"key": "long-1", "sleep": 8})
    wait_until(lambda: ledger_count(cluster, "slow-started", "long-1"), timeout=30, message="the slow step")
    figures = []
    for mode in ("fast", "immediate"):
        renewed_after(cluster, arn, now())  # restart just after a renewal: the lease has its full length
        # The database stays down until a renewal has failed on it, so the lease must be
        # renewed after the outage, by retries, before it runs out.
        restart = cluster.restart(mode, while_down=until_a_renewal_fails(cluster, arn))
        expiry = renewed_after(cluster, arn, restart.ready)  # renewed across it, by the same invocation
        renewal = expiry - datetime.timedelta(seconds=LEASE_SECONDS)
        figures.append(
            f"{mode} restart under a running step: database down {restart.downtime:.2f} s; lease "
            f"renewed {(renewal - restart.ready).total_seconds():.2f} s after the database was ready"
        )

    (status, result), *_ = wait_ended(cluster, [arn], at_least=1, timeout=30).values()
    assert (status, result) == ("SUCCEEDED", ["first", "slow", "last"])
    assert ledger_count(cluster, "slow-started", "long-1") == 1  # the step body ran once
    assert ledger_count(cluster, "slow-finished", "long-1") == 1
    outcomes = cluster.db.rows(
        "SELECT i.outcome FROM executions_invocation i"
        " JOIN executions_execution e ON e.id = i.execution_id WHERE e.arn = %s ORDER BY i.number",
        (arn,),
    )
    # One invocation from start to end: the lease was never lost, nothing took over, so no
    # second invocation ran (or started) while the first still ran.
    assert outcomes == [("SUCCEEDED",)]
    print("", *figures, sep="\n")
