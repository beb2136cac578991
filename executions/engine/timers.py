"""Timers: completing an execution's due waits, retries and callback timeouts."""

from __future__ import annotations

from django.db import transaction

from executions.engine.changes import ChangeSet
from executions.engine.db_retry import retry_transient
from executions.engine.transitions import (
    commit_changes,
    complete_due_timers,
    request_invocation,
)
from executions.models import (
    Execution,
)

# --- timers -------------------------------------------------------------------------------


@retry_transient
def timers_fire_due(execution_id: int) -> bool:
    """Complete the execution's due timers and ask for an invocation if any fired.

    Skips an execution another process holds locked: that holder (a checkpoint
    or another scheduler) completes the same timers itself. Timers that fired
    are cleared, so running it again finds nothing due.
    """
    with transaction.atomic():
        execution = Execution.objects.select_for_update(skip_locked=True).filter(pk=execution_id).first()
        if execution is None:
            return False
        changes = ChangeSet(execution)
        fired = complete_due_timers(changes)
        if fired and not execution.is_terminal:
            request_invocation(changes)
        commit_changes(changes)
        return fired
