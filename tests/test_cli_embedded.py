"""The CLI against a running embedded server (SQLite, no broker), as after `make run`.

A separate `durable serve` process plays the user's `make run`; every CLI call
is its own process, exactly as a user types them in another terminal.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, SpawnedProcess, child_process_env
from tests.polling import wait_until
from tests.servers import free_port

EMBEDDED = {"DATABASE_URL": None, "CELERY_BROKER_URL": None, "REDIS_URL": None}


def cli(var_dir: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = child_process_env({**EMBEDDED, "DURABLE_VAR_DIR": str(var_dir)})
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One `make run`-like server for the module's tests (each starts executions of its own):
    set up and started once, as its start-up is most of what these tests would cost."""
    var_dir = tmp_path_factory.mktemp("embedded")
    ok(cli(var_dir, "migrate", "--noinput"))
    setup = ok(cli(var_dir, "durable", "demo-setup"))
    assert "Login: admin / " in setup
    port = free_port()
    argv = [sys.executable, "manage.py", "durable", "serve", "--port", str(port)]
    log_path = var_dir / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=child_process_env({**EMBEDDED, "DURABLE_VAR_DIR": str(var_dir)}),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = SpawnedProcess("serve", argv, log_path, process)
    try:
        server.wait_for_log(f"http://127.0.0.1:{port}/", timeout=30)
        yield var_dir
    finally:
        server.stop()


def test_cli_drives_the_embedded_server(embedded_server: Path) -> None:
    listing = ok(cli(embedded_server, "durable", "functions", "list"))
    assert "order-processing" in listing and "chain-inventory\tv1\tplain" in listing

    finished = cli(
        embedded_server,
        "durable",
        "start",
        "order-processing",
        "--input",
        '{"order_id": "cli-1"}',
        "--wait",
        "30",
    )
    outcome = json.loads(ok(finished))
    assert outcome["Status"] == "SUCCEEDED"
    assert json.loads(outcome["Result"])["status"] == "fulfilled"

    arn = ok(
        cli(embedded_server, "durable", "start", "document-approval", "--input", '{"document_id": "cli-doc"}')
    ).strip()

    def pending_callback() -> str | None:
        described = json.loads(ok(cli(embedded_server, "durable", "describe", arn)))
        ids = [
            op["CallbackDetails"]["CallbackId"]
            for op in described["Operations"]
            if op["Type"] == "CALLBACK" and op["Status"] == "STARTED"
        ]
        return ids[0] if ids else None

    callback = wait_until(pending_callback, timeout=30, message="approval callback never started")
    decision = '{"approved": true, "comments": "fine", "reviewer": "cli"}'
    ok(cli(embedded_server, "durable", "callback", "succeed", callback, "--result", decision))

    def status() -> str:
        return json.loads(ok(cli(embedded_server, "durable", "describe", arn)))["Execution"]["Status"]

    wait_until(lambda: status() == "SUCCEEDED", timeout=30, message="approval did not finish")
    history = json.loads(ok(cli(embedded_server, "durable", "history", arn)))["Events"]
    types = [event["EventType"] for event in history]
    assert types[0] == "ExecutionStarted" and types[-1] == "ExecutionSucceeded"
    assert "CallbackSucceeded" in types
    started = next(e for e in history if e["EventType"] == "CallbackStarted")
    assert started["CallbackStartedDetails"]["CallbackId"] == callback

    again = cli(embedded_server, "durable", "callback", "succeed", callback, "--result", "x")
    assert again.returncode != 0 and "CallbackTimeoutException" in again.stderr


def test_cli_errors_are_clear(embedded_server: Path) -> None:
    missing = cli(embedded_server, "durable", "start", "no-such-function")
    assert missing.returncode != 0 and "ResourceNotFoundException" in missing.stderr
    bad_input = cli(embedded_server, "durable", "start", "order-processing", "--input", "{nope")
    assert bad_input.returncode != 0 and "InvalidParameterValueException" in bad_input.stderr
    plain = cli(embedded_server, "durable", "start", "chain-inventory")
    assert plain.returncode != 0 and "not durable" in plain.stderr


def test_stop_pause_resume_from_the_cli(embedded_server: Path) -> None:
    arn = ok(cli(embedded_server, "durable", "start", "document-approval")).strip()
    assert "paused" in ok(cli(embedded_server, "durable", "pause", arn))
    assert "resumed" in ok(cli(embedded_server, "durable", "resume", arn))
    assert "stopped at" in ok(cli(embedded_server, "durable", "stop", arn, "--reason", "test"))
    described = json.loads(ok(cli(embedded_server, "durable", "describe", arn)))["Execution"]
    assert described["Status"] == "STOPPED"
    assert described["Error"] == {"ErrorMessage": "test"}
