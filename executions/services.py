"""The engine's services, in one namespace: what views, the API, tasks, the scheduler and
the CLI call to change execution state (none of them sets a status itself).

Each function runs in one transaction on the locked execution row and sends its wake-up
hints after commit. They live in ``executions/engine/`` by concern; this module only
gathers the public ones (see docs/architecture.md)."""

from __future__ import annotations

from executions.engine.callbacks import (
    callback_fail,
    callback_fail_operation,
    callback_heartbeat,
    callback_succeed,
    callback_succeed_operation,
)
from executions.engine.chained import (
    PLAIN_CALL_LOST_MESSAGE,
    plain_invoke_claim,
    plain_invoke_complete,
    plain_invoke_recover,
    plain_invoke_renew,
)
from executions.engine.checkpoint import checkpoint, get_state
from executions.engine.functions import function_register
from executions.engine.invocations import (
    MAX_CHILD_RESULT_BYTES,
    MAX_INVALID_PENDING,
    InvocationInput,
    function_name_of,
    invocation_begin,
    invocation_claim_next,
    invocation_expire,
    invocation_finish,
    invocation_mark_dispatched,
    lease_renew,
    lock_execution_by_pk,
)
from executions.engine.lifecycle import (
    RESET_STATUSES,
    STEP_INTERRUPTED_ERROR_TYPE,
    Redriven,
    RedrivePreview,
    execution_delete,
    execution_pause,
    execution_redrive,
    execution_redrive_planned,
    execution_rerun,
    execution_resume,
    execution_stop,
    executions_purge_expired,
    is_interrupted,
    redrive_interrupted_operations,
    redrive_preview,
)
from executions.engine.starts import StartResult, execution_label_fill_in, execution_start
from executions.engine.timers import (
    timers_fire_batch,
    timers_fire_due,
    timers_next_due,
)

__all__ = [
    "MAX_CHILD_RESULT_BYTES",
    "MAX_INVALID_PENDING",
    "PLAIN_CALL_LOST_MESSAGE",
    "RESET_STATUSES",
    "STEP_INTERRUPTED_ERROR_TYPE",
    "InvocationInput",
    "RedrivePreview",
    "Redriven",
    "StartResult",
    "callback_fail",
    "callback_fail_operation",
    "callback_heartbeat",
    "callback_succeed",
    "callback_succeed_operation",
    "checkpoint",
    "execution_delete",
    "execution_label_fill_in",
    "execution_pause",
    "execution_redrive",
    "execution_redrive_planned",
    "execution_rerun",
    "execution_resume",
    "execution_start",
    "execution_stop",
    "executions_purge_expired",
    "function_name_of",
    "function_register",
    "get_state",
    "invocation_begin",
    "invocation_claim_next",
    "invocation_expire",
    "invocation_finish",
    "invocation_mark_dispatched",
    "is_interrupted",
    "lease_renew",
    "lock_execution_by_pk",
    "plain_invoke_claim",
    "plain_invoke_complete",
    "plain_invoke_recover",
    "plain_invoke_renew",
    "redrive_interrupted_operations",
    "redrive_preview",
    "timers_fire_batch",
    "timers_fire_due",
    "timers_next_due",
]
