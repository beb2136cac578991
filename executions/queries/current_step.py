"""What each execution of a list is doing now, or where it ended: the list's "Current step" column.

One query for a whole page, whatever its size: for each execution, the operation that says
the most, found by a correlated subquery on ``operation_position_idx`` (execution, position),
read backwards from the newest operation:

- running or paused: the newest open step, wait, callback or chained invoke (what it waits
  on); contexts (map, parallel, child contexts) are left out, their open leaves say more;
- failed, timed out or stopped: the newest of those that did not succeed (where it ended),
  said with the execution's own ending (``ended``): a stopped execution's callback stays
  STARTED, and its row must not count down to a deadline that no longer applies;
- succeeded: nothing.

The approval title and whether a callback is an e-mail verification come through the
reverse one-to-one relations the ``approvals`` app declares on ``Operation``
(``approval_request``, ``email_verification``), as joins of the same query; the name of a
``wait_for_callback`` group as the waiting board reads it (``queries.console.waiting_on_people``).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from django.db.models import Case, Count, F, IntegerField, OuterRef, Subquery, Value, When

from executions.models import Execution, Operation
from executions.vocabulary import (
    ACTIVE_EXECUTION_STATUSES,
    OPEN_OPERATION_STATUSES,
    ExecutionStatus,
    OperationStatus,
    OperationType,
)

# Operations that do something themselves; contexts only group them.
LEAF_TYPES = (OperationType.STEP, OperationType.WAIT, OperationType.CALLBACK, OperationType.CHAINED_INVOKE)
# Executions whose list row says where they ended.
ENDED_BADLY = (ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT, ExecutionStatus.STOPPED)
NOT_SUCCEEDED = (
    *OPEN_OPERATION_STATUSES,
    OperationStatus.FAILED,
    OperationStatus.TIMED_OUT,
    OperationStatus.STOPPED,
    OperationStatus.CANCELLED,
)
# The operation columns the column shows; the payloads are never read.
FIELDS = (
    "execution_id",
    "operation_id",
    "parent_id",
    "name",
    "type",
    "sub_type",
    "status",
    "attempt",
    "next_attempt_at",
    "scheduled_end_at",
    "callback_timeout_at",
    "invoke_function_name",
)


@dataclass(frozen=True)
class CurrentStep:
    """The operation an execution's row describes, and what to say about it."""

    kind: str  # step, wait, approval, verification, callback, invoke
    name: str  # the step's or callback's name, the approval's title, the invoked function
    status: str  # the operation's status
    attempt: int
    until: datetime.datetime | None  # a wait's end, a retry's time, a callback's deadline
    others: int  # further operations in flight besides this one
    ended: str = ""  # the execution's status once it has ended badly (FAILED, TIMED_OUT, STOPPED)

    @property
    def is_open(self) -> bool:
        """Still going: an open operation of an execution that has not ended."""
        return not self.ended and self.status in OPEN_OPERATION_STATUSES


def current_steps(executions: Sequence[Execution]) -> dict[int, CurrentStep]:
    """Execution pk -> its current (or last unsuccessful) operation. One query; none for no rows."""
    ids = [execution.pk for execution in executions]
    if not ids:
        return {}
    chosen = (
        Execution.objects.filter(pk__in=ids)
        .annotate(
            op_pk=Case(
                When(status__in=ACTIVE_EXECUTION_STATUSES, then=_newest(OPEN_OPERATION_STATUSES)),
                When(status__in=ENDED_BADLY, then=_newest(NOT_SUCCEEDED)),
                default=Value(None),
                output_field=IntegerField(),
            )
        )
        .values("op_pk")
    )
    operations = (
        Operation.objects.filter(pk__in=chosen)
        .order_by()
        .only(*FIELDS)
        .annotate(
            approval_title=F("approval_request__title"),
            verification_id=F("email_verification__id"),
            group_name=wait_for_callback_group_name(),
            # Only open operations have company in flight; a finished one is not counted.
            in_flight=Case(
                When(status__in=OPEN_OPERATION_STATUSES, then=_open_count()),
                default=Value(0),
                output_field=IntegerField(),
            ),
        )
    )
    # The ending as the row's own badge shows it (the execution read with the page).
    ended = {e.pk: e.status for e in executions if e.status in ENDED_BADLY}
    return {op.execution_id: _describe(op, ended.get(op.execution_id, "")) for op in operations}


def attach_current_steps(executions: Sequence[Execution]) -> None:
    """Set ``current_step`` (a CurrentStep or None) on each execution, for its list row."""
    steps = current_steps(executions)
    for execution in executions:
        execution.current_step = steps.get(execution.pk)  # type: ignore[attr-defined]


def _newest(statuses: Sequence[str]) -> Subquery:
    """The newest leaf operation of the outer execution with one of ``statuses``."""
    return Subquery(
        Operation.objects.filter(execution_id=OuterRef("pk"), type__in=LEAF_TYPES, status__in=statuses)
        .order_by("-position")
        .values("pk")[:1]
    )


def wait_for_callback_group_name() -> Subquery:
    """The name of the ``wait_for_callback`` group around a callback (named "<name> create callback id")."""
    return Subquery(
        Operation.objects.filter(
            execution_id=OuterRef("execution_id"),
            operation_id=OuterRef("parent_id"),
            type=OperationType.CONTEXT,
            sub_type="WaitForCallback",
        )
        .order_by()
        .values("name")[:1]
    )


def _open_count() -> Subquery:
    return Subquery(
        Operation.objects.filter(
            execution_id=OuterRef("execution_id"),
            type__in=LEAF_TYPES,
            status__in=OPEN_OPERATION_STATUSES,
        )
        .order_by()
        .values("execution_id")
        .annotate(count=Count("pk"))
        .values("count")
    )


def _describe(op: Operation, ended: str) -> CurrentStep:
    kind, name, until = _what(op)
    return CurrentStep(
        kind=kind,
        name=name,
        status=op.status,
        attempt=op.attempt,
        until=None if ended else until,  # nothing is due in an execution that has ended
        others=0 if ended else max(0, (getattr(op, "in_flight", 0) or 0) - 1),
        ended=ended,
    )


def _what(op: Operation) -> tuple[str, str, datetime.datetime | None]:
    own_name = op.name or ""
    if op.type == OperationType.WAIT:
        return "wait", own_name, op.scheduled_end_at
    if op.type == OperationType.CALLBACK:
        deadline = op.callback_timeout_at
        if title := getattr(op, "approval_title", None):
            return "approval", title, deadline
        if getattr(op, "verification_id", None):
            return "verification", getattr(op, "group_name", None) or own_name, deadline
        return "callback", getattr(op, "group_name", None) or own_name, deadline
    if op.type == OperationType.CHAINED_INVOKE:
        return "invoke", op.invoke_function_name or own_name, None
    retry_at = op.next_attempt_at if op.status == OperationStatus.PENDING else None
    return "step", own_name, retry_at
