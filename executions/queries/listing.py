"""Read-side listings the Lambda API needs: executions by function, functions, configurations.

Markers are opaque base64 to clients. Execution listings page by keyset
(start time, id), so executions started while a client pages through cannot
shift a page and repeat or skip rows; function listings page by offset over a
short, stable list.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet

from executions.engine.errors import InvalidParameterValue, ResourceNotFound
from executions.engine.functions import function_arn, function_resolve, parse_function_reference
from executions.engine.wire import TimestampFormat, as_epoch_seconds
from executions.models import Execution, Function, FunctionVersion

EXECUTION_STATUSES = frozenset(
    {"RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "STOPPED", "DELETING", "PAUSING", "PAUSED"}
)
RUNTIME = "python3.11"


# --- markers ------------------------------------------------------------------------------


def _encode_marker(value: Any) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def _decode_marker(marker: str) -> Any:
    try:
        return json.loads(base64.b64decode(marker.encode(), validate=True))
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise InvalidParameterValue(f"Invalid marker: {marker!r}") from exc


def _page_size(max_items: int | None, *, default: int, maximum: int) -> int:
    if max_items is not None and not 0 <= max_items <= maximum:
        raise InvalidParameterValue(f"MaxItems must be between 0 and {maximum}")
    return max_items or default


# --- executions by function ------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutionFilter:
    """ListDurableExecutionsByFunction's query (docs/api.md, Operations)."""

    function: str
    qualifier: str | None = None
    name: str | None = None
    statuses: tuple[str, ...] = ()
    started_after: datetime.datetime | None = None
    started_before: datetime.datetime | None = None
    oldest_first: bool = False  # ReverseOrder=true; newest first by default
    marker: str | None = None
    max_items: int | None = None


def executions_by_function(query: ExecutionFilter, ts: TimestampFormat = as_epoch_seconds) -> dict[str, Any]:
    function, qualifier = resolve_with_qualifier(query.function, query.qualifier)
    unknown = set(query.statuses) - EXECUTION_STATUSES
    if unknown:
        raise InvalidParameterValue(f"Invalid status filter: {', '.join(sorted(unknown))}")
    limit = _page_size(query.max_items, default=100, maximum=1000)
    executions = _filtered(function, qualifier, query)
    if query.marker:
        executions = executions.filter(_after_marker(query.marker, query.oldest_first))
    order = ("started_at", "id") if query.oldest_first else ("-started_at", "-id")
    page = list(executions.order_by(*order)[: limit + 1])
    response: dict[str, Any] = {
        "DurableExecutions": [_summary(execution, function, ts) for execution in page[:limit]]
    }
    if len(page) > limit:
        last = page[limit - 1]
        response["NextMarker"] = _encode_marker([last.started_at.isoformat(), last.pk])
    return response


def _filtered(function: Function, qualifier: str | None, query: ExecutionFilter) -> QuerySet[Execution]:
    executions = Execution.objects.filter(function=function)
    if qualifier:
        # The ARN carries the version label the execution was started with.
        executions = executions.filter(arn__startswith=f"{function_arn(function, qualifier)}/")
    if query.name:
        executions = executions.filter(name=query.name)
    if query.statuses:
        executions = executions.filter(status__in=query.statuses)
    if query.started_after:
        executions = executions.filter(started_at__gt=query.started_after)
    if query.started_before:
        executions = executions.filter(started_at__lt=query.started_before)
    return executions


def _after_marker(marker: str, oldest_first: bool) -> Q:
    try:
        started_text, pk = _decode_marker(marker)
        started_at = datetime.datetime.fromisoformat(started_text)
        pk = int(pk)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterValue(f"Invalid marker: {marker!r}") from exc
    if oldest_first:
        return Q(started_at__gt=started_at) | Q(started_at=started_at, pk__gt=pk)
    return Q(started_at__lt=started_at) | Q(started_at=started_at, pk__lt=pk)


def _summary(execution: Execution, function: Function, ts: TimestampFormat) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "DurableExecutionArn": execution.arn,
        "DurableExecutionName": execution.name,
        "FunctionArn": function_arn(function, str(execution.function_version)),
        "Status": execution.status,
        "StartTimestamp": ts(execution.started_at),
    }
    if execution.ended_at:
        summary["EndTimestamp"] = ts(execution.ended_at)
    return summary


def resolve_with_qualifier(reference: str, qualifier: str | None) -> tuple[Function, str | None]:
    """A function reference plus an optional separate Qualifier, as Lambda's APIs take them."""
    if qualifier:
        embedded = parse_function_reference(reference).qualifier
        if embedded and embedded != qualifier:
            raise InvalidParameterValue(
                "The derived qualifier from the function name does not match the specified qualifier."
            )
        if not embedded:
            reference = f"{reference}:{qualifier}"
    return function_resolve(reference)


# --- functions -----------------------------------------------------------------------------


def functions_list(
    *, marker: str | None = None, max_items: int | None = None, all_versions: bool = False
) -> dict[str, Any]:
    """ListFunctions: $LATEST of every function, plus each numbered version with ALL."""
    limit = _page_size(max_items, default=50, maximum=10_000)
    offset = 0
    if marker:
        offset = _decode_marker(marker)
        if not isinstance(offset, int) or offset < 0:
            raise InvalidParameterValue(f"Invalid marker: {marker!r}")
    configurations = [
        function_configuration(function, version)
        for function in Function.objects.order_by("name")
        for version in _listed_versions(function, all_versions)
    ]
    response: dict[str, Any] = {"Functions": configurations[offset : offset + limit]}
    if len(configurations) > offset + limit:
        response["NextMarker"] = _encode_marker(offset + limit)
    return response


def _listed_versions(function: Function, all_versions: bool) -> list[FunctionVersion | None]:
    if not all_versions:
        return [None]
    return [None, *function.versions.order_by("version")]


def function_get(reference: str, qualifier: str | None = None) -> dict[str, Any]:
    """GetFunction: the configuration of $LATEST or of a numbered version."""
    function, resolved = resolve_with_qualifier(reference, qualifier)
    version = None
    if resolved and resolved.isdigit():
        version = function.versions.get(version=int(resolved))
    elif resolved not in (None, "$LATEST"):
        raise ResourceNotFound(f"Function not found: {reference}:{resolved}")
    return {"Configuration": function_configuration(function, version), "Tags": {}}


def function_configuration(function: Function, version: FunctionVersion | None) -> dict[str, Any]:
    """Lambda's FunctionConfiguration, filled in as far as this service has the facts.

    $LATEST is the function row (which always holds its newest version's settings); a
    numbered version reports what that version pinned.
    """
    pinned: Function | FunctionVersion = version or function
    handler = pinned.handler
    label = str(version.version) if version else "$LATEST"
    modified = version.created_at if version else function.updated_at
    configuration: dict[str, Any] = {
        "FunctionName": function.name,
        "FunctionArn": function_arn(function, str(version.version) if version else None),
        "Runtime": RUNTIME,
        "Role": f"arn:aws:iam::{settings.DURABLE_ACCOUNT_ID}:role/durable-console",
        "Handler": handler,
        "CodeSize": 0,
        "CodeSha256": base64.b64encode(hashlib.sha256(handler.encode()).digest()).decode(),
        "Description": function.description,
        "Timeout": pinned.timeout_seconds,
        "MemorySize": pinned.memory_mb,
        "Environment": {"Variables": dict(pinned.environment or {})},
        "LastModified": modified.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000",
        "Version": label,
        "State": "Active" if function.enabled else "Inactive",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": ["x86_64"],
    }
    if function.durable:
        configuration["DurableConfig"] = {
            "RetentionPeriodInDays": function.retention_days,
            "ExecutionTimeout": function.execution_timeout,
        }
    return configuration
