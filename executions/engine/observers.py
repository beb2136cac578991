"""What the engine tells observers above it (metrics), after commit.

The engine imports no observer: ``ExecutionsConfig.ready`` registers them
(``executions/metrics.py``), as it registers the effects' sinks. Each event is
delivered once its transaction has committed (a rolled-back or retried unit
reports nothing twice) and only when someone listens, so an engine without
observers pays one list check. An observer that raises is logged and ignored.

- ``execution_started(arn)``: an execution was created (a start or a durable chained invoke);
- ``execution_finished(arn, status, started_at, ended_at)``: it reached a terminal status;
- ``timer_fired(lateness_seconds)``: a wait ended, a retry became ready or a callback timed
  out, this long after it was due.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from functools import partial

from django.db import transaction

_started: list[Callable[[str], None]] = []
_finished: list[Callable[[str, str, datetime.datetime, datetime.datetime], None]] = []
_timer_fired: list[Callable[[float], None]] = []


def add(
    *,
    started: Callable[[str], None] | None = None,
    finished: Callable[[str, str, datetime.datetime, datetime.datetime], None] | None = None,
    timer_fired: Callable[[float], None] | None = None,
) -> None:
    if started is not None and started not in _started:
        _started.append(started)
    if finished is not None and finished not in _finished:
        _finished.append(finished)
    if timer_fired is not None and timer_fired not in _timer_fired:
        _timer_fired.append(timer_fired)


def execution_started(arn: str) -> None:
    for listener in _started:
        transaction.on_commit(partial(listener, arn), robust=True)


def execution_finished(
    arn: str, status: str, started_at: datetime.datetime, ended_at: datetime.datetime
) -> None:
    for listener in _finished:
        transaction.on_commit(partial(listener, arn, status, started_at, ended_at), robust=True)


def timer_fired(due: datetime.datetime, now: datetime.datetime) -> None:
    for listener in _timer_fired:
        transaction.on_commit(partial(listener, (now - due).total_seconds()), robust=True)
