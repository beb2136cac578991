"""Starting executions: Invoke's name idempotency (docs/api.md, Operations) and child executions."""

from __future__ import annotations

import datetime
import json
import re
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction

from executions.engine import clock
from executions.engine.changes import ChangeSet, wrap_payload
from executions.engine.db_retry import retry_transient
from executions.engine.errors import DurableExecutionAlreadyStarted, InvalidParameterValue
from executions.engine.functions import function_resolve, handler_for_version
from executions.engine.rows import rows
from executions.engine.transitions import commit_changes, request_invocation
from executions.models import Execution, ExecutionStatus, Function, Operation

EXECUTION_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_INPUT_BYTES = 6 * 1024 * 1024


@dataclass(frozen=True)
class StartResult:
    execution: Execution
    created: bool


def execution_start(
    *,
    function: str,
    input_payload: str | None = None,
    name: str | None = None,
    tenant_id: str = "",
) -> StartResult:
    """Start a durable execution, or return the one already started under this name.

    The same name with the same input returns the existing execution; with a
    different input it is refused with DurableExecutionAlreadyStartedException.
    """
    # A generated name is chosen once, before any retry: a retry after a COMMIT that
    # went through then finds the execution this call created instead of starting another.
    generated = name is None
    return _start(function, input_payload, name or str(uuid.uuid4()), tenant_id, generated=generated)


@retry_transient
def _start(
    function: str, input_payload: str | None, name: str, tenant_id: str, *, generated: bool
) -> StartResult:
    registered, qualifier = function_resolve(function)
    payload = _normalize_input(input_payload)
    _check_startable(registered, name)
    try:
        with transaction.atomic():
            execution = create_execution(
                registered, payload, name=name, qualifier=qualifier, tenant_id=tenant_id
            )
    except IntegrityError:
        # Another request started the same name first; the lookup decides.
        execution = None
    if execution is None:
        existing = Execution.objects.get(function=registered, name=name)
        if existing.input_payload != payload:
            raise DurableExecutionAlreadyStarted(f"Execution {name} already started with a different input")
        return StartResult(existing, created=generated)  # a generated name is this call's own
    return StartResult(execution, created=True)


def _check_startable(function: Function, name: str | None) -> None:
    if not function.enabled:
        raise InvalidParameterValue(f"Function {function.name} is disabled")
    if not function.durable:
        raise InvalidParameterValue(
            f"Function {function.name} is not durable; invoke it synchronously instead"
        )
    if name is not None and not EXECUTION_NAME_PATTERN.match(name):
        raise InvalidParameterValue(f"Invalid execution name {name!r}: use [A-Za-z0-9_-], 1-64")


def _normalize_input(input_payload: str | None) -> str:
    payload = input_payload if input_payload not in (None, "") else "{}"
    if len(payload.encode()) > MAX_INPUT_BYTES:
        raise InvalidParameterValue(f"Input payload exceeds {MAX_INPUT_BYTES} bytes")
    try:
        json.loads(payload)
    except ValueError as exc:
        raise InvalidParameterValue(f"Input payload is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidParameterValue("Input payload is nested too deeply") from exc
    return payload


def create_execution(
    function: Function,
    payload: str,
    *,
    name: str | None = None,
    qualifier: str | None = None,
    tenant_id: str = "",
    parent: Execution | None = None,
    parent_operation_id: str = "",
) -> Execution | None:
    """Insert the execution, its EXECUTION operation and ExecutionStarted; None if the name exists.

    Runs inside the caller's transaction; the first invocation is requested
    and hinted to the workers after commit.
    """
    # A generated name cannot collide; only a caller's name needs the lookup.
    if name and Execution.objects.filter(function=function, name=name).exists():
        return None
    name = name or str(uuid.uuid4())
    now = clock.now()
    version, handler = handler_for_version(function, qualifier)
    invocation_id = str(uuid.uuid4())
    version_label = qualifier or "$LATEST"
    arn = (
        f"arn:aws:lambda:{settings.DURABLE_REGION}:{settings.DURABLE_ACCOUNT_ID}:function:"
        f"{function.name}:{version_label}/durable-execution/{name}/{invocation_id}"
    )
    execution = rows(Execution).build(
        {
            "function_id": function.pk,
            "function_version": version,
            "handler": handler,
            "name": name,
            "invocation_id": invocation_id,
            "arn": arn,
            "status": ExecutionStatus.RUNNING,
            "input_payload": payload,
            "tenant_id": tenant_id,
            "started_at": now,
            "execution_timeout": function.execution_timeout,
            "timeout_at": now + datetime.timedelta(seconds=function.execution_timeout),
            "parent_id": parent.pk if parent else None,
            "parent_operation_id": parent_operation_id,
        }
    )
    rows(Execution).insert_returning_pk(execution)
    changes = ChangeSet(execution, now)
    execution_op = changes.add_operation(
        rows(Operation).build(
            {
                "operation_id": invocation_id,
                "name": name,
                "type": "EXECUTION",
                "status": "STARTED",
                "started_at": now,
                "input_payload": payload,
            }
        )
    )
    changes.event(
        "ExecutionStarted",
        execution_op,
        Input=wrap_payload(payload),
        ExecutionTimeout=function.execution_timeout,
    )
    request_invocation(changes)
    # The handler has not seen anything yet, but its first invocation sees all.
    execution.seen_seq = execution.change_seq
    commit_changes(changes)
    return execution
