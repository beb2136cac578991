"""One process for embedded mode: ASGI server, worker threads and the scheduler."""

from __future__ import annotations

import socket
import threading

import uvicorn
from django.conf import settings
from uvicorn.config import LOGGING_CONFIG

from durable_console.logs import announce, json_format
from executions import metrics
from executions.workers.embedded import EmbeddedWorkerPool
from executions.workers.scheduler import run_forever


class AnnouncingServer(uvicorn.Server):
    """Prints the console's URL once the socket listens, so whoever reads it can connect."""

    def __init__(self, config: uvicorn.Config, announcement: str) -> None:
        super().__init__(config)
        self.announcement = announcement

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:  # not when binding failed: uvicorn has said why and exits
            announce(self.announcement)


def serve(*, host: str, port: int, embedded: bool = True) -> None:
    """Serve until Ctrl-C; uvicorn owns the signals and shuts everything down in order."""

    stop = threading.Event()
    pool: EmbeddedWorkerPool | None = None
    scheduler: threading.Thread | None = None
    if embedded:
        metrics.declare_worker_threads(settings.DURABLE_EMBEDDED_WORKERS)
        pool = EmbeddedWorkerPool(settings.DURABLE_EMBEDDED_WORKERS).start()
        scheduler = threading.Thread(target=run_forever, args=(stop,), name="durable-scheduler", daemon=True)
        scheduler.start()
    config = uvicorn.Config(
        "durable_console.asgi:application",
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        # JSON lines: uvicorn's loggers go through the project's handler, not uvicorn's own text one.
        log_config=None if json_format() else LOGGING_CONFIG,
    )
    mode = "embedded workers + scheduler" if embedded else "web only"
    try:
        AnnouncingServer(config, f"Durable Console on http://{host}:{port}/ ({mode}); Ctrl-C stops it").run()
    except KeyboardInterrupt:
        pass  # uvicorn already shut the server down; stop the rest below
    finally:
        stop.set()
        if scheduler is not None:
            scheduler.join(timeout=10)
        if pool is not None:
            pool.stop()
        announce("stopped")
