"""One process for embedded mode: ASGI server, worker threads and the scheduler."""

from __future__ import annotations

import threading

import uvicorn
from django.conf import settings

from executions.workers.embedded import EmbeddedWorkerPool
from executions.workers.scheduler import run_forever


def serve(*, host: str, port: int, embedded: bool = True) -> None:
    """Serve until Ctrl-C; uvicorn owns the signals and shuts everything down in order."""

    stop = threading.Event()
    pool: EmbeddedWorkerPool | None = None
    scheduler: threading.Thread | None = None
    if embedded:
        pool = EmbeddedWorkerPool(settings.DURABLE_EMBEDDED_WORKERS).start()
        scheduler = threading.Thread(target=run_forever, args=(stop,), name="durable-scheduler", daemon=True)
        scheduler.start()
    config = uvicorn.Config(
        "durable_console.asgi:application", host=host, port=port, log_level="warning", lifespan="off"
    )
    mode = "embedded workers + scheduler" if embedded else "web only"
    print(f"Durable Console on http://{host}:{port}/ ({mode}); Ctrl-C stops it", flush=True)
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
        print("stopped", flush=True)
