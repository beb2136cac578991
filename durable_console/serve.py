"""One process for embedded mode: ASGI server, worker threads and the scheduler."""

from __future__ import annotations

import threading

import uvicorn
from django.conf import settings
from uvicorn.config import LOGGING_CONFIG

from durable_console.logs import announce, json_format
from executions import metrics
from executions.workers.embedded import EmbeddedWorkerPool
from executions.workers.scheduler import run_forever


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
    announce(f"Durable Console on http://{host}:{port}/ ({mode}); Ctrl-C stops it")
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:
        pass  # uvicorn already shut the server down; stop the rest below
    finally:
        stop.set()
        if scheduler is not None:
            scheduler.join(timeout=10)
        if pool is not None:
            pool.stop()
        announce("stopped")
