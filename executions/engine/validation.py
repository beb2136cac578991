"""Checkpoint validation (docs/api.md and §2.8), run before anything is applied.

Pure functions over the batch and a snapshot of the stored operations: no
queries, so the whole table of rules is testable without a database. Every
failure raises ``InvalidParameterValue``, which the SDK treats as a
non-retryable execution failure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from executions.engine.errors import InvalidParameterValue
from executions.engine.plain_names import (
    CALLBACK,
    CANCEL,
    CANCELLED,
    CHAINED_INVOKE,
    CONTEXT,
    EXECUTION,
    FAIL,
    FAILED,
    PENDING,
    READY,
    RETRY,
    START,
    STARTED,
    STEP,
    SUCCEED,
    SUCCEEDED,
    WAIT,
)
from executions.vocabulary import plain

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SUB_TYPE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
NAME_PATTERN = re.compile(r"^[\x20-\x7e]{1,256}$")
TENANT_PATTERN = re.compile(r"^[a-zA-Z0-9._:/=+\-@ ]{1,256}$")

MAX_ERROR_BYTES = 32_768
MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_WAIT_SECONDS = 31_622_400
MAX_CALLBACK_SECONDS = 99_999_999
MAX_UPDATES_PER_BATCH = 250 * 4  # the SDK sends ≤250; leave room for other clients

TYPES = plain(
    frozenset(
        {
            EXECUTION,
            CONTEXT,
            STEP,
            WAIT,
            CALLBACK,
            CHAINED_INVOKE,
        }
    )
)
ACTIONS_BY_TYPE: Mapping[str, frozenset[str]] = plain(
    {
        STEP: frozenset({START, SUCCEED, FAIL, RETRY}),
        CONTEXT: frozenset({START, SUCCEED, FAIL}),
        WAIT: frozenset({START, CANCEL}),
        CALLBACK: frozenset({START}),
        CHAINED_INVOKE: frozenset({START}),
        EXECUTION: frozenset({SUCCEED, FAIL}),
    }
)
ERROR_STRING_FIELDS = ("ErrorMessage", "ErrorType", "ErrorData")

# What a status must be (None = the op does not exist yet) for an action to apply.
ALLOWED_FROM: Mapping[tuple[str, str], frozenset[str | None]] = plain(
    {
        (STEP, START): frozenset({None, READY}),
        (STEP, SUCCEED): frozenset({None, STARTED, READY}),
        (STEP, FAIL): frozenset({None, STARTED, READY}),
        (STEP, RETRY): frozenset({None, STARTED, READY}),
        (CONTEXT, START): frozenset({None}),
        (CONTEXT, SUCCEED): frozenset({None, STARTED}),
        (CONTEXT, FAIL): frozenset({None, STARTED}),
        (WAIT, START): frozenset({None}),
        (WAIT, CANCEL): frozenset({STARTED}),
        (CALLBACK, START): frozenset({None}),
        (CHAINED_INVOKE, START): frozenset({None}),
    }
)
RESULTING_STATUS: Mapping[tuple[str, str], str] = plain(
    {
        (STEP, START): STARTED,
        (STEP, SUCCEED): SUCCEEDED,
        (STEP, FAIL): FAILED,
        (STEP, RETRY): PENDING,
        (CONTEXT, START): STARTED,
        (CONTEXT, SUCCEED): SUCCEEDED,
        (CONTEXT, FAIL): FAILED,
        (WAIT, START): STARTED,
        (WAIT, CANCEL): CANCELLED,
        (CALLBACK, START): STARTED,
        (CHAINED_INVOKE, START): STARTED,
    }
)


class StoredOp:
    """The fields of a stored operation the validator needs."""

    __slots__ = ("name", "parent_id", "status", "sub_type", "type")

    def __init__(self, type: str, sub_type: str, name: str, parent_id: str, status: str) -> None:
        self.type = type
        self.sub_type = sub_type
        self.name = name
        self.parent_id = parent_id
        self.status = status


def validate_batch(updates: Sequence[Any], stored: Mapping[str, StoredOp]) -> None:
    """Raise InvalidParameterValue unless the whole batch may be applied."""
    if not isinstance(updates, (list, tuple)):
        raise InvalidParameterValue("Updates must be a list")
    if len(updates) > MAX_UPDATES_PER_BATCH:
        raise InvalidParameterValue(f"Too many updates: {len(updates)}")
    for update in updates:
        _validate_shape(update)
    _validate_execution_update_last(updates)
    projected: dict[str, str] = {op_id: op.status for op_id, op in stored.items()}
    types: dict[str, str] = {op_id: op.type for op_id, op in stored.items()}
    seen_in_batch: dict[str, str] = {}
    for update in updates:
        op_id, op_type, action = update["Id"], update["Type"], update["Action"]
        if op_type == EXECUTION:
            _validate_outcome_fields(update, EXECUTION)
            continue
        _validate_duplicate(update, seen_in_batch)
        _validate_parent(update, types, projected)
        if op_id in stored:
            _validate_metadata(update, stored[op_id])
        _validate_transition(update, projected.get(op_id))
        _validate_options(update)
        projected[op_id] = RESULTING_STATUS[(op_type, action)]
        types[op_id] = op_type
        seen_in_batch[op_id] = action


def _validate_shape(update: Any) -> None:
    if not isinstance(update, dict):
        raise InvalidParameterValue("Each update must be an object")
    op_id = update.get("Id")
    if not isinstance(op_id, str) or not ID_PATTERN.match(op_id):
        raise InvalidParameterValue(f"Invalid operation Id: {op_id!r}")
    op_type, action = update.get("Type"), update.get("Action")
    if op_type not in TYPES:
        raise InvalidParameterValue(f"Invalid operation Type: {op_type!r}")
    if action not in ACTIONS_BY_TYPE[op_type]:
        raise InvalidParameterValue(f"Invalid action {action!r} for operation type {op_type}")
    _validate_optional_string(update, "ParentId", ID_PATTERN)
    _validate_optional_string(update, "Name", NAME_PATTERN)
    _validate_optional_string(update, "SubType", SUB_TYPE_PATTERN)
    payload = update.get("Payload")
    if payload is not None and not isinstance(payload, str):
        raise InvalidParameterValue("Payload must be a string")
    if payload is not None and op_type != EXECUTION and len(payload.encode()) > MAX_PAYLOAD_BYTES:
        raise InvalidParameterValue(f"Payload of operation {op_id} exceeds {MAX_PAYLOAD_BYTES} bytes")
    if "Error" in update and update["Error"] is not None:
        _validate_error_object(update["Error"])


def _validate_optional_string(update: dict[str, Any], key: str, pattern: re.Pattern[str]) -> None:
    value = update.get(key)
    if value is None:
        return
    if not isinstance(value, str) or not pattern.match(value):
        raise InvalidParameterValue(f"Invalid {key}: {value!r}")


def _validate_error_object(error: Any) -> None:
    if not isinstance(error, dict):
        raise InvalidParameterValue("Error must be an object")
    for key, value in error.items():
        if key in ERROR_STRING_FIELDS:
            if value is not None and not isinstance(value, str):
                raise InvalidParameterValue(f"Error.{key} must be a string")
        elif key == "StackTrace":
            if value is not None and (
                not isinstance(value, list) or not all(isinstance(line, str) for line in value)
            ):
                raise InvalidParameterValue("Error.StackTrace must be a list of strings")
        else:
            raise InvalidParameterValue(f"Unknown Error field {key!r}")
    if len(json.dumps(error).encode()) > MAX_ERROR_BYTES:
        raise InvalidParameterValue(f"Error exceeds {MAX_ERROR_BYTES} bytes")


def _validate_execution_update_last(updates: Sequence[dict[str, Any]]) -> None:
    positions = [i for i, update in enumerate(updates) if update["Type"] == EXECUTION]
    if len(positions) > 1:
        raise InvalidParameterValue("Cannot checkpoint multiple EXECUTION updates")
    if positions and positions[0] != len(updates) - 1:
        raise InvalidParameterValue("EXECUTION update must be the last update")


# Types whose START may be followed by its completion in the same batch.
_COMPLETED_AFTER_START = frozenset({STEP, CONTEXT})


def _validate_duplicate(update: dict[str, Any], seen_in_batch: Mapping[str, str]) -> None:
    op_id = update["Id"]
    if op_id not in seen_in_batch:
        return
    allowed = (
        update["Type"] in _COMPLETED_AFTER_START
        and seen_in_batch[op_id] == START
        and update["Action"] != START
    )
    if not allowed:
        raise InvalidParameterValue(f"Cannot update the same operation twice: {op_id}")


def _validate_parent(update: dict[str, Any], types: Mapping[str, str], projected: Mapping[str, str]) -> None:
    parent_id = update.get("ParentId")
    if parent_id is None:
        return
    if types.get(parent_id) != CONTEXT or parent_id not in projected:
        raise InvalidParameterValue(f"Invalid parent operation id: {parent_id}")


def _validate_metadata(update: dict[str, Any], stored: StoredOp) -> None:
    checks = (
        ("Type", stored.type),
        ("SubType", stored.sub_type),
        ("Name", stored.name),
        ("ParentId", stored.parent_id),
    )
    for key, stored_value in checks:
        if key in update and update[key] is not None and update[key] != stored_value:
            raise InvalidParameterValue(
                f"Inconsistent operation metadata: {key} {update[key]!r} does not match "
                f"{stored_value!r} for operation {update['Id']}"
            )


def _validate_transition(update: dict[str, Any], current: str | None) -> None:
    op_type, action = update["Type"], update["Action"]
    if current not in ALLOWED_FROM[(op_type, action)]:
        state = current or "absent"
        raise InvalidParameterValue(
            f"Invalid {op_type} {action} for operation {update['Id']} in state {state}"
        )
    _validate_outcome_fields(update, op_type)


def _validate_outcome_fields(update: dict[str, Any], op_type: str) -> None:
    action = update["Action"]
    has_payload = update.get("Payload") is not None
    has_error = update.get("Error") is not None
    if action == FAIL and has_payload:
        raise InvalidParameterValue(f"Cannot provide a Payload for a {op_type} FAIL")
    if action == SUCCEED and has_error:
        raise InvalidParameterValue(f"Cannot provide an Error for a {op_type} SUCCEED")
    if action == RETRY and has_payload and has_error:
        raise InvalidParameterValue("Cannot provide both Error and Payload for a STEP RETRY")


def _validate_options(update: dict[str, Any]) -> None:
    op_type, action = update["Type"], update["Action"]
    if op_type == STEP and action == RETRY:
        delay = _options(update, "StepOptions").get("NextAttemptDelaySeconds")
        _require_int("StepOptions.NextAttemptDelaySeconds", delay, 1, MAX_WAIT_SECONDS)
    elif op_type == WAIT and action == START:
        seconds = _options(update, "WaitOptions").get("WaitSeconds")
        _require_int("WaitOptions.WaitSeconds", seconds, 1, MAX_WAIT_SECONDS)
    elif op_type == CALLBACK:
        options = update.get("CallbackOptions") or {}
        if not isinstance(options, dict):
            raise InvalidParameterValue("CallbackOptions must be an object")
        for key in ("TimeoutSeconds", "HeartbeatTimeoutSeconds"):
            if options.get(key) is not None:
                _require_int(f"CallbackOptions.{key}", options[key], 0, MAX_CALLBACK_SECONDS)
    elif op_type == CHAINED_INVOKE:
        options = _options(update, "ChainedInvokeOptions")
        name = options.get("FunctionName")
        if not isinstance(name, str) or not 1 <= len(name) <= 256:
            raise InvalidParameterValue("ChainedInvokeOptions.FunctionName is required")
        tenant = options.get("TenantId")
        if tenant is not None and (not isinstance(tenant, str) or not TENANT_PATTERN.match(tenant)):
            raise InvalidParameterValue(f"Invalid TenantId: {tenant!r}")
    elif op_type == CONTEXT:
        options = update.get("ContextOptions") or {}
        if not isinstance(options, dict):
            raise InvalidParameterValue("ContextOptions must be an object")


def _options(update: dict[str, Any], key: str) -> dict[str, Any]:
    options = update.get(key)
    if not isinstance(options, dict):
        raise InvalidParameterValue(f"{key} is required for {update['Type']} {update['Action']}")
    return options


def _require_int(label: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidParameterValue(f"{label} must be an integer from {low} to {high}")
