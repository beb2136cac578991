"""``/metrics`` (issue 13), in the test process: format, switch, engine events, database gauges.

Every process of the session writes to one ``PROMETHEUS_MULTIPROC_DIR``, so
counters are compared before and after what a test does. The Procfile's end to
end test (``tests/test_procfile.py``) checks the same metrics from a web process
scraping a real web, worker (with its sandbox children) and scheduler, across a
killed worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from django.test import Client, override_settings

from durable_console.bootstrap import register_demo_functions
from examples import ledger
from executions.metrics import execution_started, function_of
from executions.models import Execution
from tests.conftest import SpawnedProcess
from tests.engine_driver import EngineDriver, engine_driver, start, started_callback
from tests.metrics_support import Samples, parse, value
from tests.servers import free_port

pytestmark = pytest.mark.django_db


def scrape(client: Client | None = None) -> Samples:
    response = (client or Client()).get("/metrics")
    assert response.status_code == 200, response.content
    return parse(response.content.decode())


def test_metrics_needs_no_login_and_speaks_prometheus() -> None:
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples = parse(response.content.decode())
    for name in (
        "durable_due_work_oldest_age_seconds",
        "durable_open_callbacks",
        "durable_open_callbacks_expiring_soon",
        "durable_worker_busy_ratio",
        "durable_database_up",
    ):
        assert name in samples, name


@override_settings(DURABLE_METRICS=False)
def test_durable_metrics_0_switches_it_off() -> None:
    assert Client().get("/metrics").status_code == 404


def test_the_function_is_read_from_the_arn() -> None:
    arn = "arn:aws:lambda:us-east-1:123456789012:function:booking:$LATEST/durable-execution/n/i"
    assert function_of(arn) == "booking"


@pytest.fixture
def driver() -> Iterator[EngineDriver]:
    register_demo_functions()
    with engine_driver() as running:
        yield running
    ledger.close()  # the demos' ledger keeps a connection on a thread of its own


@pytest.mark.django_db(transaction=True)  # engine events are reported after commit
def test_engine_events_and_database_gauges(driver: EngineDriver) -> None:
    before = scrape()
    booking = start("booking", {"booking_id": "m-1", "faults": {"booking.reserve_room": 1}})
    driver.run_until(lambda: Execution.objects.get(pk=booking.pk).is_terminal)
    approval = start("document-approval", {"document_id": "m-doc"})
    driver.run_until(lambda: started_callback(approval, "await-approval create callback id") is not None)
    waiting = start("order-processing", {"order_id": "m-op"})  # its hint is never taken
    driver.clock.advance(30)
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert Execution.objects.get(pk=booking.pk).status == "SUCCEEDED"
    assert delta("durable_executions_started_total", function="booking") == 1
    assert delta("durable_executions_started_total") == 3
    assert delta("durable_executions_finished_total", function="booking", status="SUCCEEDED") == 1
    assert delta("durable_executions_finished_total") == 1
    # The SDK's client in this process checkpointed each step; its retry became ready by a timer.
    assert delta("durable_checkpoint_duration_seconds_count", via="sdk") > 0
    assert delta("durable_checkpoint_operations_total", type="STEP", action="SUCCEED") >= 2
    assert delta("durable_checkpoint_operations_total", type="STEP", action="RETRY") == 1
    assert delta("durable_checkpoint_operations_total", type="CALLBACK", action="START") == 1
    assert delta("durable_timer_lateness_seconds_count") == 1
    # Read from the database when scraped: the approval waits for its reviewer (24 h),
    # the order's first invocation has been due for the 30 s the clock moved.
    assert value(after, "durable_open_callbacks") == 1
    assert value(after, "durable_open_callbacks_expiring_soon") == 0
    assert value(after, "durable_due_work_oldest_age_seconds", kind="invocation") == pytest.approx(30, abs=1)
    assert waiting.status == "RUNNING"


def test_live_gauges_of_dead_processes_are_forgotten() -> None:
    """A worker killed outright leaves its thread count in its file; the next scrape drops it."""
    before = value(scrape(), "durable_worker_threads")
    code = (
        "from prometheus_client import Gauge\n"
        "Gauge('durable_worker_threads', 'x', multiprocess_mode='livesum').set(7)\n"
        "import os; print(os.getpid())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    pid = int(done.stdout)
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    assert os.path.exists(os.path.join(path, f"gauge_livesum_{pid}.db"))
    assert value(scrape(), "durable_worker_threads") == before  # the process is gone
    assert not os.path.exists(os.path.join(path, f"gauge_livesum_{pid}.db"))


def test_a_host_without_a_web_process_serves_its_metrics(
    spawn_process: Callable[..., SpawnedProcess],
) -> None:
    """`durable metrics-server`: what this host's processes recorded, on a port of its own."""
    execution_started("arn:aws:lambda:r:1:function:exported-fn:$LATEST/durable-execution/n/i")
    port = free_port()
    server = spawn_process(
        [
            sys.executable,
            "manage.py",
            "durable",
            "metrics-server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        name="metrics-server",
    )
    server.wait_for_log(f"http://127.0.0.1:{port}/metrics", timeout=60)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        samples = parse(response.read().decode())
    assert value(samples, "durable_executions_started_total", function="exported-fn") >= 1
    assert "durable_worker_busy_ratio" in samples
    assert "durable_open_callbacks" not in samples  # the database's gauges come from /metrics
