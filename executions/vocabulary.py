"""The engine's words: execution and operation statuses, operation types and actions, and
which operator actions each execution status allows.

Every member is a ``TextChoices`` member, so it *is* its wire string (``OperationType.STEP ==
"STEP"``, hashes alike, serialises to JSON unchanged) and the columns keep plain strings. The
operation words are the SDK's (``aws_durable_execution_sdk_python.lambda_service``); its enums
are plain ``Enum`` (``OperationType.STEP != "STEP"``), so they are redeclared here, and
tests/test_vocabulary.py checks that both name the same values.

Only Django's ``TextChoices`` is imported: models, the engine, the workers, the console, bulk
jobs and approvals all read this module, and it reads none of them.
"""

from __future__ import annotations

import sys
from typing import TypeVar, cast

from django.db import models


class ExecutionStatus(models.TextChoices):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    STOPPED = "STOPPED"
    PAUSED = "PAUSED"


class OperationType(models.TextChoices):
    EXECUTION = "EXECUTION"
    CONTEXT = "CONTEXT"
    STEP = "STEP"
    WAIT = "WAIT"
    CALLBACK = "CALLBACK"
    CHAINED_INVOKE = "CHAINED_INVOKE"


class OperationStatus(models.TextChoices):
    STARTED = "STARTED"
    PENDING = "PENDING"
    READY = "READY"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"
    STOPPED = "STOPPED"


class OperationAction(models.TextChoices):
    START = "START"
    SUCCEED = "SUCCEED"
    FAIL = "FAIL"
    RETRY = "RETRY"
    CANCEL = "CANCEL"


class OperationSubType(models.TextChoices):
    STEP = "Step"
    WAIT = "Wait"
    CALLBACK = "Callback"
    RUN_IN_CHILD_CONTEXT = "RunInChildContext"
    MAP = "Map"
    MAP_ITERATION = "MapIteration"
    PARALLEL = "Parallel"
    PARALLEL_BRANCH = "ParallelBranch"
    WAIT_FOR_CALLBACK = "WaitForCallback"
    WAIT_FOR_CONDITION = "WaitForCondition"
    CHAINED_INVOKE = "ChainedInvoke"


class ExecutionAction(models.TextChoices):
    """What an operator (console, API, CLI, bulk job, approval) may do to an execution."""

    STOP = "stop"
    PAUSE = "pause"
    RESUME = "resume"
    REDRIVE = "redrive"
    RERUN = "rerun"
    DELETE = "delete"
    COMPLETE_CALLBACK = "complete_callback"


# --- status sets ----------------------------------------------------------------------------

TERMINAL_EXECUTION_STATUSES = frozenset(
    {
        ExecutionStatus.SUCCEEDED,
        ExecutionStatus.FAILED,
        ExecutionStatus.TIMED_OUT,
        ExecutionStatus.STOPPED,
    }
)
# Not ended: the scheduler's timers, stops and bulk stops apply to these (in this order in filters).
ACTIVE_EXECUTION_STATUSES = (ExecutionStatus.RUNNING, ExecutionStatus.PAUSED)
# A redrive runs these again from their last good checkpoint.
REDRIVABLE_STATUSES = (ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT)
# Operations still waiting for something (a worker, a timer, a callback) when seen.
OPEN_OPERATION_STATUSES = (OperationStatus.STARTED, OperationStatus.PENDING, OperationStatus.READY)

# --- actions each execution status allows ------------------------------------------------------
# The services check again under the row lock; this table is what the console offers and what
# bulk jobs select. Completing a callback also needs the callback STARTED.

_ALWAYS = frozenset({ExecutionAction.RERUN})
ALLOWED_ACTIONS: dict[str, frozenset[ExecutionAction]] = {
    ExecutionStatus.RUNNING: _ALWAYS
    | {ExecutionAction.STOP, ExecutionAction.PAUSE, ExecutionAction.COMPLETE_CALLBACK},
    ExecutionStatus.PAUSED: _ALWAYS
    | {ExecutionAction.STOP, ExecutionAction.RESUME, ExecutionAction.COMPLETE_CALLBACK},
    ExecutionStatus.SUCCEEDED: _ALWAYS | {ExecutionAction.DELETE},
    ExecutionStatus.FAILED: _ALWAYS | {ExecutionAction.REDRIVE, ExecutionAction.DELETE},
    ExecutionStatus.TIMED_OUT: _ALWAYS | {ExecutionAction.REDRIVE, ExecutionAction.DELETE},
    ExecutionStatus.STOPPED: _ALWAYS | {ExecutionAction.DELETE},
}


def allows(status: str, action: str) -> bool:
    """Whether an execution in ``status`` allows ``action`` (an ``ExecutionAction``)."""
    return action in ALLOWED_ACTIONS.get(status, frozenset())


def statuses_allowing(action: str) -> tuple[ExecutionStatus, ...]:
    """The execution statuses that allow ``action``, in ``ExecutionStatus`` order."""
    return tuple(status for status in ExecutionStatus if allows(status, action))


# --- tables read per checkpoint update ----------------------------------------------------------

_Table = TypeVar("_Table")


def plain(table: _Table) -> _Table:
    """``table`` with every member of this vocabulary in it (keys, tuples, sets) as an exact ``str``.

    A member equals its string, but a dict or set holding subclass instances loses ``str``'s
    fast lookup path; the checkpoint hot loop looks up the plain strings of each update in
    tables like these, so they are written with members and stored plain.
    """
    return cast(_Table, _plain(table))


def _plain(value: object) -> object:
    if isinstance(value, str):
        # The interned exact str: the very object a literal "STEP" is (the SDK's enum values,
        # the wire updates built from them), so comparisons usually stop at identity.
        return sys.intern(str.__str__(value))
    if isinstance(value, tuple):
        return tuple(_plain(item) for item in value)
    if isinstance(value, frozenset):
        return frozenset(_plain(item) for item in value)
    if isinstance(value, dict):
        return {_plain(key): _plain(item) for key, item in value.items()}
    return value
