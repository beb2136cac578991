"""The Celery app. Tasks are wake-up hints; the database decides what runs.

Also what keeps a worker process alive through broker outages:

- ``RedisTransport``: kombu's Redis transport with the fixes for worker crashes on
  a Redis restart under load (celery 5.7.0 / kombu 5.7.0, see ``_RedisChannel``);
- ``run_worker``: ``durable worker`` runs Celery's worker in a loop, so a worker
  that still exits on an unrecoverable error is started again (with backoff) by
  the process itself, whatever runs it (honcho, a container, a plain shell).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from celery import Celery, signals
from kombu.transport import redis as kombu_redis

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "durable_console.settings")

logger = logging.getLogger("durable_console.worker")

app = Celery("durable_console")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["executions"])


# --- the Redis transport ---------------------------------------------------------------------


class _RedisChannel(kombu_redis.Channel):
    """A channel that survives being used after its broker connection was lost.

    When the broker connection drops, celery 5.7.0's consumer first calls
    ``Connection.collect()`` and then ``Connection.close()``
    (``Consumer.on_connection_error_after_connected``); ``collect()`` detaches
    the transport (``transport.client = None``) and closing a channel detaches
    it from the transport (``channel.connection = None``). Two things then reach
    Redis through a channel with no connection parameters and raise
    ``AttributeError`` (``'NoneType' object has no attribute 'hostname'``, or
    ``'client'``), which is not a connection error: Celery calls it
    unrecoverable and the worker exits.

    - Closing again: with Redis down, the first close of the default channel
      fails part-way (its pending BRPOP read raises ``ConnectionError``, which
      kombu swallows) and leaves the channel open. The second close tries to put
      the unacknowledged messages back (there are some whenever ``acks_late``
      tasks are running: under load). Here it skips that restore.
    - Acknowledging late: a task that was running during the outage finishes
      after the reconnect and acks its message through the old, closed channel.
      Here that raises ``ConnectionError``, which Celery logs ("Couldn't ack").

    Nothing is lost either way: the messages stay in Redis' unacked set and come
    back after the visibility timeout, and they are only hints; the scheduler
    re-dispatches every due execution from the database.
    """

    def close(self) -> None:
        if not self.closed and self._transport_gone():
            self.do_restore = False
        super().close()

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        self._require_transport("acknowledge")
        super().basic_ack(delivery_tag, multiple=multiple)

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        self._require_transport("reject")
        super().basic_reject(delivery_tag, requeue=requeue)

    def _transport_gone(self) -> bool:
        return self.connection is None or self.connection.client is None

    def _require_transport(self, action: str) -> None:
        if self._transport_gone():
            raise redis.exceptions.ConnectionError(
                f"cannot {action} the message: its broker connection was lost (it comes back "
                "after the visibility timeout)"
            )


class RedisTransport(kombu_redis.Transport):
    """kombu's Redis transport with ``_RedisChannel`` (settings: CELERY_BROKER_TRANSPORT)."""

    Channel = _RedisChannel


# --- the supervised worker -------------------------------------------------------------------

FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
# A worker that ran this long before exiting was healthy: the next restart is quick again.
HEALTHY_RUN_SECONDS = 60.0


class WorkerSupervisor:
    """Runs Celery's worker until it is asked to stop; restarts it when it exits on its own.

    ``start`` runs one worker to completion and returns its exit code (Celery's
    ``app.start``). A stop is asked for by a signal Celery handles (SIGTERM,
    SIGINT, SIGQUIT: ``worker_shutting_down``) or by ``request_stop``; then the
    loop ends with the worker's code. Any other exit (an unrecoverable error, a
    broker gone at start-up past its retries) is logged and followed by a restart
    after a pause that doubles from 1 s to 30 s, and is back at 1 s once a worker
    has run for a minute.
    """

    def __init__(
        self,
        start: Callable[[Sequence[str]], Any],
        *,
        clock: Callable[[], float] = time.monotonic,
        max_restarts: int | None = None,
    ) -> None:
        self.start = start
        self.clock = clock
        self.max_restarts = max_restarts
        self.restarts = 0
        self.stop_requested = threading.Event()

    def request_stop(self, **_: Any) -> None:
        self.stop_requested.set()

    def run(self, argv: Sequence[str]) -> int:
        delay = FIRST_RESTART_DELAY
        while True:
            began = self.clock()
            code = _exit_code(self.start(list(argv)))
            if self.stop_requested.is_set() or self._out_of_restarts():
                return code
            if self.clock() - began >= HEALTHY_RUN_SECONDS:
                delay = FIRST_RESTART_DELAY
            self.restarts += 1
            logger.error(
                "celery worker exited on its own (exit code %s); restarting it in %.0f s (restart %d)",
                code,
                delay,
                self.restarts,
            )
            if self.stop_requested.wait(delay):  # a stop asked for during the pause
                return code
            delay = min(delay * 2, MAX_RESTART_DELAY)
            _forget_worker_state()

    def _out_of_restarts(self) -> bool:
        return self.max_restarts is not None and self.restarts >= self.max_restarts


def _exit_code(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _forget_worker_state() -> None:
    """What a finished worker leaves in module globals, which the next one would inherit."""
    from celery.worker import state

    state.reset_state()


def run_worker(argv: Sequence[str], *, quiet: bool = False) -> int:
    """``celery worker`` with ``argv`` (options only), restarted until a signal stops it.

    ``quiet``: no start-up banner (it is not a log line; JSON logs must be only log lines).
    """
    options = ["--quiet"] if quiet else []
    supervisor = WorkerSupervisor(lambda args: app.start([*options, "worker", *args]))
    signals.worker_shutting_down.connect(supervisor.request_stop, weak=False)
    try:
        return supervisor.run(argv)
    finally:
        signals.worker_shutting_down.disconnect(supervisor.request_stop)
