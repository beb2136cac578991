"""Wake-up hints sent after commit: to the embedded worker pool or to Celery.

A hint only says "look at this execution now". Losing one costs latency, not
work: the scheduler finds every due execution in the database anyway.

A worker woken by any message runs what it names, then claims due invocations
from the database until none is left before it takes another message
(``workers/invoker.py``, ``Invoker.drain``). So a "wake" hint only has to reach an
idle worker, and a message still waiting in the queue means none was idle: every
message already queued will start such a claim loop after this commit, which
finds this execution too. ``send`` therefore tops the queue up to
``HINT_BACKLOG`` waiting messages and no further (when the sink can say how many
wait: ``waiting()``); hints beyond that would only be read, later, to find the
work already done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from django.db import transaction

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Wake:
    """Hint: the execution's next invocation is due (capped by ``HINT_BACKLOG``)."""

    execution_id: int


@dataclass(frozen=True, slots=True)
class PlainInvoke:
    """Hint: call the plain function a CHAINED_INVOKE operation names (always sent)."""

    execution_id: int
    operation_id: str


@dataclass(frozen=True, slots=True)
class Changed:
    """The execution changed: the live layer's listeners push it to watchers."""

    execution_id: int


Effect = Wake | PlainInvoke | Changed


class WorkSink(Protocol):
    """Where hints go: the embedded pool (or a test driver) in-process, or Celery.

    A sink may also have ``waiting() -> int | None``: how many messages wait
    to be taken (None, or no such method: unknown, so every hint is sent).
    """

    def submit_execution(self, execution_id: int) -> None: ...
    def submit_plain_invoke(self, execution_id: int, operation_id: str) -> None: ...


# Waiting "wake" messages beyond which more are not sent (see the module docstring): enough
# for a burst of due work to wake several idle workers at once before any has taken one.
HINT_BACKLOG = 16


class BrokerSink(WorkSink, Protocol):
    def submit_bulk_job(self, job_id: int) -> None: ...


_local_sink: WorkSink | None = None
# Registered at startup (ExecutionsConfig.ready), so the engine never imports the layers
# that consume its effects: the Celery sink when a broker is configured, and the live layer.
_broker_sink: BrokerSink | None = None
_change_listeners: list[Callable[[int], None]] = []


def set_local_sink(sink: WorkSink | None) -> None:
    """Route hints to an in-process worker pool (embedded mode and tests)."""
    global _local_sink
    _local_sink = sink


def set_broker_sink(sink: BrokerSink | None) -> None:
    """Route hints to a message broker's workers (production)."""
    global _broker_sink
    _broker_sink = sink


def add_change_listener(listener: Callable[[int], None]) -> None:
    """Call ``listener(execution_id)`` after every committed change (live updates)."""
    if listener not in _change_listeners:
        _change_listeners.append(listener)


def is_embedded() -> bool:
    """Whether an in-process worker pool takes this process's work (embedded mode, tests)."""
    return _local_sink is not None


def broker() -> BrokerSink | None:
    """The broker's sink, unless an in-process pool takes this process's work."""
    return None if _local_sink is not None else _broker_sink


def can_hint() -> bool:
    """Whether this process delivers wake-up hints (else only the scheduler finds work)."""
    return _local_sink is not None or _broker_sink is not None


def after_commit(effects: Iterable[Effect]) -> None:
    pending = list(effects)
    if pending:
        transaction.on_commit(lambda: send(pending))


def send(effects: Iterable[Effect]) -> None:
    pending = list(dict.fromkeys(effects))
    wakes = sum(1 for effect in pending if isinstance(effect, Wake))
    budget = wakes if not wakes else min(wakes, max(0, HINT_BACKLOG - (waiting() or 0)))
    for effect in pending:
        if isinstance(effect, Wake):
            if budget <= 0:
                continue  # enough messages wait already: their claim loops will find it
            budget -= 1
        try:
            _send_one(effect)
        except Exception:  # a lost hint is recovered by the scheduler's next sweep
            logger.warning("wake-up hint %s not delivered", effect, exc_info=True)


def waiting() -> int | None:
    """How many messages wait in the hint queue, if the sink can tell (else None)."""
    sink = _local_sink or _broker_sink
    count = getattr(sink, "waiting", None)
    if count is None:
        return None
    try:
        value = count()
        return None if value is None else int(value)
    except Exception:  # the broker is away: unknown, so hints are sent (and may fail)
        logger.warning("could not read the hint queue's length", exc_info=True)
        return None


def _send_one(effect: Effect) -> None:
    if isinstance(effect, Changed):
        for listener in _change_listeners:
            listener(effect.execution_id)
        return
    sink = _local_sink or _broker_sink
    if sink is None:
        return
    if isinstance(effect, Wake):
        sink.submit_execution(effect.execution_id)
    else:
        sink.submit_plain_invoke(effect.execution_id, effect.operation_id)
