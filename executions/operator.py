"""Operator actions: the engine's services plus an audit entry, in one transaction.

The console, the API and the CLI call these (never the bare services) for
anything a person does, so every action is recorded once, the same way.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.db import transaction

from executions import audit, services
from executions.audit import Actor
from executions.engine.functions import function_register
from executions.models import Execution, Function


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


def stop(
    actor: Actor, arn: str, reason: str = "", *, error: dict[str, Any] | None = None
) -> datetime.datetime:
    """Stop with the reason as the error message (or an explicit error object, as the API sends)."""
    error = error if error is not None else ({"ErrorMessage": reason} if reason else None)
    with transaction.atomic():
        stopped_at = services.execution_stop(arn, error)
        audit.record(actor, "execution.stop", arn, reason=reason or (error or {}).get("ErrorMessage", ""))
        return stopped_at


def pause(actor: Actor, arn: str, reason: str = "", *, timeout_paused: bool = False) -> None:
    with transaction.atomic():
        services.execution_pause(arn, reason=reason or None, timeout_paused=timeout_paused)
        audit.record(actor, "execution.pause", arn, reason=reason)


def resume(actor: Actor, arn: str, reason: str = "") -> None:
    with transaction.atomic():
        services.execution_resume(arn, reason=reason or None)
        audit.record(actor, "execution.resume", arn, reason=reason)


def redrive(
    actor: Actor, arn: str, reason: str = "", *, rerun_interrupted: bool = False
) -> services.Redriven:
    """Redrive; the audit entry keeps the operator's choice about interrupted operations.

    ``interrupted`` names the operations that may have taken effect already;
    ``rerun_interrupted`` says whether the operator accepted running them again.
    """
    with transaction.atomic():
        redriven = services.execution_redrive_planned(arn, rerun_interrupted=rerun_interrupted)
        audit.record(
            actor,
            "execution.redrive",
            arn,
            reason=reason,
            rerun_interrupted=rerun_interrupted,
            interrupted=[op.name or op.operation_id for op in redriven.plan.interrupted],
        )
        return redriven


def rerun(actor: Actor, arn: str, input_payload: str | None = None) -> Execution:
    with transaction.atomic():
        execution = services.execution_rerun(arn, input_payload)
        if actor.user is not None:
            Execution.objects.filter(pk=execution.pk).update(started_by=actor.user)
        audit.record(actor, "execution.rerun", execution.arn, original=arn)
        return execution


def delete(actor: Actor, arn: str) -> datetime.datetime:
    with transaction.atomic():
        deleted_at = services.execution_delete(arn)
        audit.record(actor, "execution.delete", arn)
        return deleted_at


def callback_succeed(actor: Actor, callback_id: str, result: str, *, arn: str = "") -> None:
    with transaction.atomic():
        services.callback_succeed(callback_id, result)
        audit.record(actor, "callback.succeed", arn, result=result[:2000])


def callback_fail(actor: Actor, callback_id: str, error: dict[str, Any] | None, *, arn: str = "") -> None:
    with transaction.atomic():
        services.callback_fail(callback_id, error)
        audit.record(actor, "callback.fail", arn, error=error or {})


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
        )
        return function


def function_set_enabled(actor: Actor, name: str, enabled: bool) -> Function:
    with transaction.atomic():
        function = Function.objects.select_for_update().get(name=name)
        function.enabled = enabled
        function.save(update_fields=["enabled", "updated_at"])
        audit.record(actor, "function.enable" if enabled else "function.disable", name)
        return function
