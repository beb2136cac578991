"""A live Durable Console inside the test process: uvicorn on a free loopback port.

The server is the production ASGI application, with the embedded worker pool
and the scheduler loop on threads, exactly as ``durable serve`` runs them; it
shares the test database. Running it in-process (rather than a subprocess)
lets a test replace the engine's clock (see ``SkippingClock``) and keeps the
catalogue handlers' per-execution counters in one process.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import uvicorn
from botocore.config import Config
from django.conf import settings
from django.db import connections

from executions.api import access_keys
from executions.workers.embedded import EmbeddedWorkerPool
from executions.workers.invoker import HandlerRunner
from executions.workers.scheduler import run_forever
from tests.polling import wait_until


@dataclass
class LiveServer:
    url: str
    port: int
    server: uvicorn.Server

    def client(self, key: access_keys.IssuedKey, **config: Any) -> Any:
        return lambda_client(self.url, key, **config)


def lambda_client(url: str, key: access_keys.IssuedKey, **config: Any) -> Any:
    """A boto3 Lambda client for ``url``, signing with ``key``; no retries unless asked."""
    options: dict[str, Any] = {"retries": {"max_attempts": 1, "mode": "standard"}}
    options.update(config)
    return boto3.client(
        "lambda",
        endpoint_url=url,
        region_name=settings.DURABLE_REGION,
        aws_access_key_id=key.access_key_id,
        aws_secret_access_key=key.secret_access_key,
        config=Config(**options),
    )


def key_environment(url: str, key: access_keys.IssuedKey) -> dict[str, str]:
    """Environment variables that point AWS tools and the SDK at the server."""
    return {
        "AWS_ACCESS_KEY_ID": key.access_key_id,
        "AWS_SECRET_ACCESS_KEY": key.secret_access_key,
        "AWS_DEFAULT_REGION": settings.DURABLE_REGION,
        "AWS_ENDPOINT_URL_LAMBDA": url,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }


@contextmanager
def live_server(
    *, workers: int = 2, scheduler_interval: float = 0.05, runner: HandlerRunner | None = None
) -> Iterator[LiveServer]:
    """Serve the API, workers and scheduler until the block ends.

    Handlers run in sandbox children as in production, unless ``runner`` says otherwise
    (``tests.in_process_runner.InProcessRunner`` for a replaced clock or in-process counters).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config("durable_console.asgi:application", log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    web = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    stop = threading.Event()
    scheduler = threading.Thread(
        target=_scheduler, args=(stop, scheduler_interval), daemon=True, name="test-scheduler"
    )
    pool = EmbeddedWorkerPool(workers, runner).start()
    web.start()
    scheduler.start()
    try:
        wait_until(lambda: server.started, timeout=10, message="uvicorn to start")
        yield LiveServer(f"http://127.0.0.1:{port}", port, server)
    finally:
        server.should_exit = True
        web.join(timeout=10)
        stop.set()
        scheduler.join(timeout=10)
        pool.stop()
        sock.close()


def _scheduler(stop: threading.Event, interval: float) -> None:
    try:
        run_forever(stop, interval)
    finally:
        connections.close_all()
