"""Live updates for the console: told after commit which executions changed.

``notify`` is called (after commit, from any process that changed an
execution: web, worker, scheduler) with the execution's id. It must be cheap
and must never raise: it runs on the checkpoint path's after-commit hook. So it
only adds the id to a set; a per-process pusher thread wakes up, waits a short
debounce window (a burst of checkpoints of one execution becomes one push),
renders the console's partials once and sends them through the Channels layer:

- ``execution.<pk>``: the detail page's header partial, plus a placeholder
  that makes each watching browser fetch the heavier regions (timeline,
  history, actions) through the permission-checked view. Those carry per-user
  content and CSRF tokens, and rendering them here would cost the worker time
  for every checkpoint even when nobody watches.
- ``executions``: the execution list's row partial for each changed execution.

Fragments are rendered without a request: no user, no CSRF token. Embedded mode uses
the in-memory layer, which
only works on the event loop of the server that holds the consumers; the
consumers register that loop, and with no loop registered nobody in this
process can be listening, so nothing is rendered at all.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Iterable

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.db import close_old_connections, connections
from django.template.loader import render_to_string

from executions.engine import db_retry
from executions.models import Execution, Function

logger = logging.getLogger(__name__)

LIST_GROUP = "executions"
MESSAGE_TYPE = "html.fragment"  # handled by the consumers' html_fragment()
SEND_TIMEOUT_SECONDS = 5.0


def execution_group(execution_id: int) -> str:
    return f"execution.{execution_id}"


def notify(execution_id: int) -> None:
    """An execution changed; the console will push fresh fragments to its watchers."""
    try:
        _pusher().add(execution_id)
    except Exception:  # live updates are best effort; the checkpoint path must go on
        logger.warning("live update for execution %s dropped", execution_id, exc_info=True)


# --- rendering ---------------------------------------------------------------------------


def render_execution_push(execution: object) -> str:
    """What an execution's watchers receive: the header, and the refresh placeholder."""
    context = {"execution": execution}
    return render_to_string("executions/detail.html#header", context) + render_to_string(
        "executions/detail.html#live-sync", context
    )


def render_list_push(executions: Iterable[object]) -> str:
    return "".join(
        render_to_string("executions/list.html#row", {"execution": execution}) for execution in executions
    )


# The fragments never show these; they can be large.
UNUSED_COLUMNS = ("input_payload", "result", "last_response", "last_inbound_token", "updated_operation_ids")


def render_messages(execution_ids: Iterable[int]) -> list[tuple[str, str]]:
    """(group, html) pairs for a batch of changed executions: two queries, one list message."""

    # Two single-table queries rather than a join: a statement that locks two tables
    # can deadlock with one that locks them in the other order (a TRUNCATE between
    # tests, a migration), and this runs whenever anything changed.
    executions = list(
        Execution.objects.filter(pk__in=list(execution_ids)).defer(*UNUSED_COLUMNS).order_by("-pk")
    )
    functions = Function.objects.in_bulk({e.function_id for e in executions})
    executions = [e for e in executions if e.function_id in functions]
    for execution in executions:
        execution.function = functions[execution.function_id]
    messages = [(execution_group(e.pk), render_execution_push(e)) for e in executions]
    if executions:
        messages.append((LIST_GROUP, render_list_push(executions)))
    return messages


# --- sending -----------------------------------------------------------------------------

_server_loop: asyncio.AbstractEventLoop | None = None


def register_loop(loop: asyncio.AbstractEventLoop) -> None:
    """The event loop serving this process's websockets (called by the consumers)."""
    global _server_loop
    _server_loop = loop


def _in_memory_loop() -> asyncio.AbstractEventLoop | None:
    loop = _server_loop
    return loop if loop is not None and loop.is_running() else None


def has_listeners_here() -> bool:
    """False when the layer is in-memory and no websocket server runs in this process."""
    return not isinstance(get_channel_layer(), InMemoryChannelLayer) or _in_memory_loop() is not None


def send(messages: list[tuple[str, str]], own_loop: asyncio.AbstractEventLoop | None = None) -> None:
    """group_send each message: on the server's loop (in-memory layer) or on ``own_loop`` (Redis)."""
    layer = get_channel_layer()
    if layer is None or not messages:
        return

    async def send_all() -> None:
        for group, html in messages:
            await layer.group_send(group, {"type": MESSAGE_TYPE, "html": html})

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
    """Render and send the fragments for these executions now.

    The reads are retried on transient database errors (a restarted server) on a
    fresh connection, so a push is late rather than lost.
    """
    if not has_listeners_here():
        return
    send(db_retry.call(render_messages, execution_ids), own_loop)


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
            # A burst may come long after the last one: check the connection first
            # (CONN_HEALTH_CHECKS), so one the database dropped meanwhile is replaced.
            close_old_connections()
            try:
                flush(batch, loop)
            except Exception:
                logger.warning("live update of %d execution(s) failed", len(batch), exc_info=True)
                connections.close_all()  # whatever broke, the next burst starts on a new connection
                continue
            with self.condition:
                idle = not self.pending
            if idle:  # a quiet moment: give the database connection back
                connections.close_all()


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
