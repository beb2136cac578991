"""The embedded worker pool: Celery's job, done by threads in the web process.

Used by ``durable serve`` without a broker, and by tests that want real
workers without separate processes. The threads only supervise: handlers run
in sandbox child processes (``executions.workers.sandbox``), so a handler that
hangs, crashes or eats memory costs its own invocation, never the server.
"""

from __future__ import annotations

import logging
import queue
import threading

from django.db import close_old_connections

from executions.engine import effects as dispatch
from executions.workers.invoker import HandlerRunner, Invoker, SandboxRunner, default_worker_name
from executions.workers.sandbox import close_shared_pool, shared_pool

logger = logging.getLogger(__name__)

_STOP = ("stop", None)


class EmbeddedWorkerPool:
    def __init__(self, size: int, runner: HandlerRunner | None = None) -> None:
        self._runner = runner
        self._size = size
        self._queue: queue.Queue[tuple[str, object]] = queue.Queue()
        self._queued: set[tuple[str, object]] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, name=f"durable-worker-{i}", daemon=True) for i in range(size)
        ]

    def start(self) -> EmbeddedWorkerPool:
        if self._runner is None:  # boot the sandboxes now, not on the first invocations
            threading.Thread(target=shared_pool().warm, args=(self._size,), daemon=True).start()
        for thread in self._threads:
            thread.start()
        dispatch.set_local_sink(self)
        return self

    def stop(self) -> None:
        dispatch.set_local_sink(None)
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=30)
        if self._runner is None:
            close_shared_pool()

    def submit_execution(self, execution_id: int) -> None:
        self._put(("wake", execution_id))

    def submit_plain_invoke(self, execution_id: int, operation_id: str) -> None:
        self._put(("plain_invoke", (execution_id, operation_id)))

    def waiting(self) -> int:
        """Hints no thread has taken yet (``engine/effects.py`` sends no more past a few)."""
        return self._queue.qsize()

    def _put(self, item: tuple[str, object]) -> None:
        with self._lock:
            if item in self._queued:
                return  # already waiting; one run covers both hints
            self._queued.add(item)
        self._queue.put(item)

    def _work(self) -> None:
        invoker = Invoker(f"{default_worker_name()}:embedded", self._runner or SandboxRunner())
        try:
            while (item := self._queue.get()) != _STOP:
                with self._lock:
                    self._queued.discard(item)
                self._handle(invoker, item)
        finally:
            invoker.close()
            close_old_connections()

    def _handle(self, invoker: Invoker, item: tuple[str, object]) -> None:
        kind, target = item
        try:
            if kind == "wake":
                invoker.run_execution(target)  # type: ignore[arg-type]
            else:
                invoker.run_plain_invoke(*target)  # type: ignore[misc]
            # As a Celery task does: claim what else is due before taking the next hint.
            invoker.drain(self._stopping.is_set)
        except Exception:
            logger.exception("embedded worker failed on %s %s", kind, target)
