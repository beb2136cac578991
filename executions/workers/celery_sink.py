"""Hints to Celery workers: registered as the engine's broker sink when a broker is configured."""

from __future__ import annotations

import threading
from typing import Any

import redis
from django.conf import settings

from executions import tasks


class CeleryWorkSink:
    """Sends each hint as a task message; the database still decides what runs."""

    def __init__(self) -> None:
        self._redis: redis.Redis | None = None
        self._lock = threading.Lock()

    def submit_execution(self, execution_id: int) -> None:
        tasks.run_execution.delay(execution_id)

    def submit_plain_invoke(self, execution_id: int, operation_id: str) -> None:
        tasks.run_plain_invoke.delay(execution_id, operation_id)

    def submit_bulk_job(self, job_id: int) -> None:
        tasks.run_bulk_job.delay(job_id)

    def waiting(self) -> int:
        """Messages waiting in the tasks' queue (``engine/effects.py`` tops it up only so far).

        Redis: one LLEN, on a client of this sink's own (the tasks carry no priority, so
        they all sit in the queue's own list); another broker: a passive declare.
        """
        queue = tasks.run_execution.app.conf.task_default_queue
        client = self._redis_client()
        if client is not None:
            return int(client.llen(queue))
        with tasks.run_execution.app.pool.acquire(block=True) as connection:
            channel: Any = connection.default_channel
            return int(channel.queue_declare(queue=queue, passive=True).message_count)

    def _redis_client(self) -> redis.Redis | None:
        url = settings.CELERY_BROKER_URL
        if not url.startswith(("redis://", "rediss://")):
            return None
        with self._lock:
            if self._redis is None:
                # Short timeouts: a broker that is away must not hold up a commit's hints.
                self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            return self._redis
