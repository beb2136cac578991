"""Operator actions: the engine's services plus an audit entry, in one transaction.

The console, the API and the CLI call these (never the bare services) for
anything a person does, so every action is recorded once, the same way. Actions on an
execution take the ``Execution`` a caller already loaded (the console's permission check,
a bulk job's chunk) or its ARN (the API, the CLI); the audit entry names the ARN either way.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.db import transaction

from executions import audit, services
from executions.audit import Actor
from executions.engine.functions import function_register
from executions.engine.lifecycle import ExecutionRef
from executions.models import Execution, Function, Operation


def start(
    actor: Actor, function: str, input_payload: str | None, *, name: str | None = None
) -> services.StartResult:
    with transaction.atomic():
        started = services.execution_start(function=function, input_payload=input_payload, name=name)
        if started.created:
            if actor.user is not None:
                Execution.objects.filter(pk=started.execution.pk).update(started_by=actor.user)
            audit.record(actor, "execution.start", started.execution.arn, function=function)
        return started


def _arn(target: ExecutionRef) -> str:
    return target if isinstance(target, str) else target.arn


def stop(
    actor: Actor, target: ExecutionRef, reason: str = "", *, error: dict[str, Any] | None = None
) -> datetime.datetime:
    """Stop with the reason as the error message (or an explicit error object, as the API sends)."""
    error = error if error is not None else ({"ErrorMessage": reason} if reason else None)
    with transaction.atomic():
        stopped_at = services.execution_stop(target, error)
        audit.record(
            actor, "execution.stop", _arn(target), reason=reason or (error or {}).get("ErrorMessage", "")
        )
        return stopped_at


def pause(actor: Actor, target: ExecutionRef, reason: str = "", *, timeout_paused: bool = False) -> None:
    with transaction.atomic():
        services.execution_pause(target, reason=reason or None, timeout_paused=timeout_paused)
        audit.record(actor, "execution.pause", _arn(target), reason=reason)


def resume(actor: Actor, target: ExecutionRef, reason: str = "") -> None:
    with transaction.atomic():
        services.execution_resume(target, reason=reason or None)
        audit.record(actor, "execution.resume", _arn(target), reason=reason)


def redrive(
    actor: Actor, target: ExecutionRef, reason: str = "", *, rerun_interrupted: bool = False
) -> services.Redriven:
    """Redrive; the audit entry keeps the operator's choice about interrupted operations.

    ``interrupted`` names the operations that may have taken effect already;
    ``rerun_interrupted`` says whether the operator accepted running them again.
    """
    with transaction.atomic():
        redriven = services.execution_redrive_planned(target, rerun_interrupted=rerun_interrupted)
        audit.record(
            actor,
            "execution.redrive",
            _arn(target),
            reason=reason,
            rerun_interrupted=rerun_interrupted,
            interrupted=[op.name or op.operation_id for op in redriven.plan.interrupted],
        )
        return redriven


def rerun(actor: Actor, target: ExecutionRef, input_payload: str | None = None) -> Execution:
    with transaction.atomic():
        execution = services.execution_rerun(target, input_payload)
        if actor.user is not None:
            Execution.objects.filter(pk=execution.pk).update(started_by=actor.user)
        audit.record(actor, "execution.rerun", execution.arn, original=_arn(target))
        return execution


def delete(actor: Actor, target: ExecutionRef) -> datetime.datetime:
    with transaction.atomic():
        deleted_at = services.execution_delete(target)
        audit.record(actor, "execution.delete", _arn(target))
        return deleted_at


def callback_succeed(actor: Actor, callback_id: str, result: str | bytes | None) -> None:
    """Complete a callback known by its id (the API, the CLI); the audit entry names its operation."""
    with transaction.atomic():
        done = services.callback_succeed(callback_id, result)
        audit.record(
            actor,
            "callback.succeed",
            done.execution_arn,
            result=_preview(result),
            operation=done.operation_id,
        )


def callback_fail(actor: Actor, callback_id: str, error: dict[str, Any] | None) -> None:
    with transaction.atomic():
        done = services.callback_fail(callback_id, error)
        audit.record(
            actor, "callback.fail", done.execution_arn, error=error or {}, operation=done.operation_id
        )


def _preview(result: str | bytes | None) -> str:
    """The start of a result, as text, for the audit entry (the API's result is raw bytes)."""
    text = result.decode("utf-8", "replace") if isinstance(result, bytes) else result or ""
    return text[:2000]


def callback_succeed_operation(actor: Actor, op: Operation, result: str, *, arn: str = "") -> None:
    """``callback_succeed`` for the CALLBACK operation the caller holds (the console)."""
    with transaction.atomic():
        services.callback_succeed_operation(op, result)
        # The operation names the row the console's timeline labels "completed by hand".
        audit.record(actor, "callback.succeed", arn, result=_preview(result), operation=op.operation_id)


def callback_fail_operation(
    actor: Actor, op: Operation, error: dict[str, Any] | None, *, arn: str = ""
) -> None:
    """``callback_fail`` for the CALLBACK operation the caller holds (the console)."""
    with transaction.atomic():
        services.callback_fail_operation(op, error)
        audit.record(actor, "callback.fail", arn, error=error or {}, operation=op.operation_id)


def function_save(actor: Actor, **fields: Any) -> Function:
    with transaction.atomic():
        function = function_register(**fields)
        # Variable names only: values may be secrets, and the audit log is widely readable.
        audit.record(
            actor,
            "function.save",
            function.name,
            version=function.version,
            handler=function.handler,
            timeout_seconds=function.timeout_seconds,
            memory_mb=function.memory_mb,
            environment_keys=sorted(function.environment),
            label_field=function.label_field,
        )
        return function


def function_set_enabled(actor: Actor, name: str, enabled: bool) -> Function:
    with transaction.atomic():
        function = Function.objects.select_for_update().get(name=name)
        function.enabled = enabled
        function.save(update_fields=["enabled", "updated_at"])
        audit.record(actor, "function.enable" if enabled else "function.disable", name)
        return function
