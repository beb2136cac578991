"""Live updates, publishing side: which executions changed, never what they look like.

``notify`` is called (after commit, from any process that changed an execution:
web, Celery worker, sandbox child, scheduler) with the execution's id. It must be
cheap and must never raise: it runs on the checkpoint path's after-commit hook.
So it only adds the id to a set; a per-process pusher thread wakes up, waits a
short debounce window (a burst of checkpoints of one execution becomes one
message) and sends the ids through the Channels layer:

- ``execution.<pk>``: ``{"type": "executions.changed", "ids": [pk], "batch": ...}``
  for each changed execution;
- ``executions``: the same message with every id of the batch, for the list and
  the home page.

No database query and no template here. The web processes that hold websocket
consumers render the fragments (``executions.live.fragments``), and only for the
groups someone watches. Rendering here cost every process that changed an
execution a query and a template render per burst whether or not anyone
watched: about a third of the CPU of a Celery worker and of its sandbox
children running short executions. ``batch`` names one publication, so a web
process renders it once for all its watchers.

Embedded mode uses the in-memory layer, which only works on the event loop of
the server that holds the consumers; the consumers register that loop, and
with no loop registered nobody in this process can be listening, so nothing is
sent at all (a sandbox child, or worker threads in a process without a server).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

logger = logging.getLogger(__name__)

LIST_GROUP = "executions"
MESSAGE_TYPE = "executions.changed"  # handled by the consumers' executions_changed()
SEND_TIMEOUT_SECONDS = 5.0


def execution_group(execution_id: int) -> str:
    return f"execution.{execution_id}"


def notify(execution_id: int) -> None:
    """An execution changed; its watchers will be told after the debounce window."""
    try:
        _pusher().add(execution_id)
    except Exception:  # live updates are best effort; the checkpoint path must go on
        logger.warning("live update for execution %s dropped", execution_id, exc_info=True)


def withdraw(execution_id: int) -> None:
    """Drop a pending notice: another process will announce this execution's change.

    A sandbox child calls it when an invocation ends: the worker that supervised it
    records the outcome next and announces the execution then, so the checkpoints of
    an invocation shorter than the debounce window cost the child no message at all.
    Longer invocations still announce their steps as they go.
    """
    pusher = _instance
    if pusher is not None and pusher.pid == os.getpid():
        pusher.discard(execution_id)


# --- the messages --------------------------------------------------------------------------


def messages(execution_ids: Iterable[int]) -> list[tuple[str, dict[str, Any]]]:
    """(group, message) pairs for a batch of changed executions: one per execution, one list."""
    ids = sorted(set(execution_ids), reverse=True)  # newest first, as the list shows them
    if not ids:
        return []
    batch = os.urandom(8).hex()
    pairs: list[tuple[str, dict[str, Any]]] = [
        (execution_group(pk), {"type": MESSAGE_TYPE, "ids": [pk], "batch": batch}) for pk in ids
    ]
    pairs.append((LIST_GROUP, {"type": MESSAGE_TYPE, "ids": ids, "batch": batch}))
    return pairs


# --- sending -----------------------------------------------------------------------------

_server_loop: asyncio.AbstractEventLoop | None = None


def register_loop(loop: asyncio.AbstractEventLoop) -> None:
    """The event loop serving this process's websockets (called by the consumers)."""
    global _server_loop
    _server_loop = loop


def _in_memory_loop() -> asyncio.AbstractEventLoop | None:
    loop = _server_loop
    return loop if loop is not None and loop.is_running() else None


def send(pairs: list[tuple[str, dict[str, Any]]], own_loop: asyncio.AbstractEventLoop | None = None) -> None:
    """group_send each message: on the server's loop (in-memory layer) or on ``own_loop`` (Redis).

    With the in-memory layer and no server loop in this process, nobody can be
    listening: nothing is sent.
    """
    layer = get_channel_layer()
    if layer is None or not pairs:
        return

    async def send_all() -> None:
        for group, message in pairs:
            await layer.group_send(group, message)

    if isinstance(layer, InMemoryChannelLayer):
        loop = _in_memory_loop()
        if loop is not None:
            asyncio.run_coroutine_threadsafe(send_all(), loop).result(SEND_TIMEOUT_SECONDS)
        return
    if own_loop is not None:
        own_loop.run_until_complete(asyncio.wait_for(send_all(), SEND_TIMEOUT_SECONDS))
    else:
        asyncio.run(send_all())


def flush(execution_ids: set[int], own_loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Tell the watchers of these executions, wherever they are, that they changed."""
    send(messages(execution_ids), own_loop)


# --- the pusher thread -------------------------------------------------------------------


class _Pusher:
    """Collects changed ids and flushes them on its own thread after a debounce window."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.pending: set[int] = set()
        self.condition = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="durable-live", daemon=True)
        self.thread.start()

    def add(self, execution_id: int) -> None:
        with self.condition:
            self.pending.add(execution_id)
            self.condition.notify()

    def discard(self, execution_id: int) -> None:
        with self.condition:
            self.pending.discard(execution_id)

    def _run(self) -> None:
        # channels-redis keeps its connections per event loop: one loop, reused.
        loop = asyncio.new_event_loop()
        while True:
            with self.condition:
                while not self.pending:
                    self.condition.wait()
            time.sleep(settings.DURABLE_LIVE_DEBOUNCE_SECONDS)  # let the burst finish
            with self.condition:
                batch, self.pending = self.pending, set()
            if not batch:
                continue  # withdrawn meanwhile
            try:
                flush(batch, loop)
            except Exception:  # a lost message costs a watcher one update; the next burst goes on
                logger.warning("live update of %d execution(s) failed", len(batch), exc_info=True)


_lock = threading.Lock()
_instance: _Pusher | None = None


def _pusher() -> _Pusher:
    """This process's pusher, started on first use (again in a forked worker process)."""
    global _instance
    pusher = _instance
    if pusher is not None and pusher.pid == os.getpid() and pusher.thread.is_alive():
        return pusher
    with _lock:
        if _instance is None or _instance.pid != os.getpid() or not _instance.thread.is_alive():
            _instance = _Pusher()
        return _instance
