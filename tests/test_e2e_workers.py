"""End to end on PostgreSQL and Redis: Celery worker processes and the scheduler, started here.

Executions are started from the test process (its wake-up hints go through
Redis); separate `durable worker` processes run the handlers; a separate
`durable scheduler` fires timers and re-dispatches. Nothing is mocked.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from durable_console.bootstrap import register_demo_functions
from examples import ledger
from examples.ledger import count
from executions import services
from executions.engine.functions import function_register
from executions.models import Execution
from tests.conftest import SpawnedProcess
from tests.e2e_handlers import slow_steps
from tests.engine_driver import callback_id, handler_path, start, started_callback
from tests.polling import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MANAGE = [sys.executable, "manage.py", "durable"]
LEASE_SECONDS = "3"


@pytest.fixture
def cluster(
    requires_postgresql: None, redis_url: str, spawn_process: Callable[..., SpawnedProcess]
) -> Iterator[dict[str, Any]]:
    register_demo_functions()
    function_register(name="slow-steps", handler=handler_path(slow_steps))
    env = {"DURABLE_LEASE_SECONDS": LEASE_SECONDS, "DURABLE_INVOCATION_RETRY_DELAY_SECONDS": "0.5"}
    workers = [
        spawn_process(
            [*MANAGE, "worker", "--concurrency", "1", "--pool", "solo", "--loglevel", "info"],
            env=env,
            name=f"worker-{index}",
        )
        for index in range(2)
    ]
    scheduler = spawn_process([*MANAGE, "scheduler"], env=env, name="scheduler")
    for worker in workers:
        worker.wait_for_log("ready", timeout=60)
    yield {"workers": workers, "scheduler": scheduler, "spawn": spawn_process, "env": env}
    ledger.close()


def finished(execution: Execution, timeout: float = 60) -> Execution:
    return wait_until(
        lambda: (e := Execution.objects.get(pk=execution.pk)).is_terminal and e,
        timeout=timeout,
        message=f"{execution.function.name} did not finish",
    )


def result_of(execution: Execution) -> dict[str, Any]:
    assert execution.status == "SUCCEEDED", execution.error
    return json.loads(execution.result)


def test_demo_functions_complete_on_worker_processes(cluster: dict[str, Any]) -> None:
    runs = {
        "order-processing": {"order_id": "e2e-op"},
        "distributed-transaction": {
            "order_id": "e2e-dt",
            "faults": {"payment.charge": 1},
            "retry_delay_seconds": 1,
        },
        "function-chaining": {"order_id": "e2e-fc"},
        "batch-processing": {"job_id": "e2e-bp", "record_count": 40, "batch_size": 5},
        "booking": {"booking_id": "e2e-bk", "faults": {"booking.reserve_room": 1}},
        "data-pipeline": {
            "job_id": "e2e-dp",
            "record_count": 20,
            "batch_size": 10,
            "rate_limit_wait_seconds": 1,
            "off_peak_wait_seconds": 1,
        },
    }
    executions = {name: start(name, payload) for name, payload in runs.items()}
    approval = start("document-approval", {"document_id": "e2e-doc"})
    callback = wait_until(
        lambda: started_callback(approval, "await-approval create callback id"),
        timeout=30,
        message="the approval callback never started",
    )
    services.callback_succeed(
        callback_id(callback), json.dumps({"approved": True, "comments": "ok", "reviewer": "e2e"})
    )
    for name, execution in executions.items():
        assert result_of(finished(execution))["status"], name
    assert result_of(finished(approval))["status"] == "approved"
    assert count("payment", "charge", "e2e-dt") == 1  # the transient failure did not double-charge
    assert count("records", "process", "e2e-bp") == 8


def test_killed_worker_loses_nothing_and_at_most_once_body_is_not_rerun(cluster: dict[str, Any]) -> None:
    execution = start("slow-steps", {"key": "kill-1", "sleep": 4})
    wait_until(
        lambda: count("e2e", "slow-started", "kill-1") == 1, timeout=30, message="the slow step never started"
    )
    owner = Execution.objects.get(pk=execution.pk).lease_owner
    victim = next(w for w in cluster["workers"] if owner.split(":")[1] == str(w.pid))  # host:pid:thread
    victim.signal(signal.SIGKILL)
    # Another worker must take over after the lease expires; the interrupted
    # AT_MOST_ONCE step goes through its retry strategy instead of re-running blindly.
    done = finished(execution, timeout=60)
    assert done.status == "SUCCEEDED", done.error
    assert json.loads(done.result) == ["first", "slow", "last"]
    assert count("e2e", "slow-finished", "kill-1") == 1
    assert count("e2e", "slow-started", "kill-1") == 2  # attempt 1 killed, attempt 2 ran
