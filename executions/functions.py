"""The function registry: registering handlers and resolving function references.

A reference is what callers write to name a function (CONTRACT.md §2.4): a
name, ``name:qualifier``, a partial ARN ``account:function:name`` or a full ARN
in this service's account and region.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

from executions.errors import InvalidParameterValue, ResourceNotFound
from executions.models import (
    DEFAULT_FUNCTION_MEMORY_MB,
    DEFAULT_FUNCTION_TIMEOUT_SECONDS,
    Function,
    FunctionVersion,
)
from executions.remote import RemoteHandler, is_remote

FUNCTION_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
HANDLER_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
ARN_PATTERN = re.compile(
    r"^arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):function:"
    r"(?P<name>[A-Za-z0-9_-]{1,64})(:(?P<qualifier>\$LATEST(\.PUBLISHED)?|[A-Za-z0-9_-]+))?$"
)
PARTIAL_ARN_PATTERN = re.compile(
    r"^(?P<account>\d{12}):function:(?P<name>[A-Za-z0-9_-]{1,64})"
    r"(:(?P<qualifier>\$LATEST(\.PUBLISHED)?|[A-Za-z0-9_-]+))?$"
)
NAME_QUALIFIER_PATTERN = re.compile(
    r"^(?P<name>[A-Za-z0-9_-]{1,64})(:(?P<qualifier>\$LATEST(\.PUBLISHED)?|[A-Za-z0-9_-]+))?$"
)


@dataclass(frozen=True)
class FunctionReference:
    name: str
    qualifier: str | None


def parse_function_reference(reference: str) -> FunctionReference:
    """Parse a reference, refusing other accounts and regions."""
    region, account = settings.DURABLE_REGION, settings.DURABLE_ACCOUNT_ID
    if match := ARN_PATTERN.match(reference):
        if match["region"] != region or match["account"] != account:
            raise ResourceNotFound(
                f"Function not found: {reference}. Only functions in account {account}, "
                f"region {region} can be invoked."
            )
        return FunctionReference(match["name"], match["qualifier"])
    if match := PARTIAL_ARN_PATTERN.match(reference):
        if match["account"] != account:
            raise ResourceNotFound(f"Function not found: {reference}.")
        return FunctionReference(match["name"], match["qualifier"])
    if match := NAME_QUALIFIER_PATTERN.match(reference):
        return FunctionReference(match["name"], match["qualifier"])
    raise InvalidParameterValue(f"Invalid function name: {reference!r}")


def function_resolve(reference: str) -> tuple[Function, str | None]:
    """The registered function a reference names, and its qualifier."""
    parsed = parse_function_reference(reference)
    function = Function.objects.filter(name=parsed.name).first()
    if function is None:
        raise ResourceNotFound(f"Function not found: {reference}.")
    if parsed.qualifier and not _qualifier_exists(function, parsed.qualifier):
        raise ResourceNotFound(f"Function not found: {reference}.")
    return function, parsed.qualifier


def _qualifier_exists(function: Function, qualifier: str) -> bool:
    if qualifier in {"$LATEST", "$LATEST.PUBLISHED"}:
        return True
    return qualifier.isdigit() and function.versions.filter(version=int(qualifier)).exists()


def function_arn(function: Function, qualifier: str | None = None) -> str:
    base = f"arn:aws:lambda:{settings.DURABLE_REGION}:{settings.DURABLE_ACCOUNT_ID}:function:{function.name}"
    return f"{base}:{qualifier}" if qualifier else base


def load_handler(path: str) -> Callable[..., Any]:
    """Import ``module:attr``; raise InvalidParameterValue with the reason if it fails.

    An ``http(s)://`` path names a handler hosted elsewhere (``executions.remote``).
    """
    if is_remote(path):
        return RemoteHandler(path)
    if not HANDLER_PATTERN.match(path):
        raise InvalidParameterValue(f"Handler must look like module.path:attribute, got {path!r}")
    module_name, attr = path.split(":")
    try:
        module = importlib.import_module(module_name)
        handler = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidParameterValue(f"Cannot import handler {path}: {exc}") from exc
    if not callable(handler):
        raise InvalidParameterValue(f"Handler {path} is not callable")
    return handler


@transaction.atomic
def function_register(
    *,
    name: str,
    handler: str,
    durable: bool = True,
    description: str = "",
    execution_timeout: int | None = None,
    retention_days: int | None = None,
    enabled: bool = True,
) -> Function:
    """Create or update a function; a new handler path makes a new version.

    Running executions keep the version they started on (DESIGN.md §2).
    """
    if not FUNCTION_NAME_PATTERN.match(name):
        raise InvalidParameterValue(f"Invalid function name {name!r}: use [A-Za-z0-9_-], 1-64")
    load_handler(handler)
    timeout = execution_timeout or settings.DURABLE_DEFAULT_EXECUTION_TIMEOUT_SECONDS
    if not 1 <= timeout <= 31_622_400:
        raise InvalidParameterValue("Execution timeout must be 1 to 31,622,400 seconds")
    function = Function.objects.select_for_update().filter(name=name).first()
    if function is None:
        function = Function.objects.create(
            name=name,
            handler=handler,
            durable=durable,
            description=description,
            execution_timeout=timeout,
            retention_days=retention_days or 14,
            enabled=enabled,
        )
        FunctionVersion.objects.create(function=function, version=1, handler=handler)
        return function
    if function.handler != handler:
        function.version += 1
        FunctionVersion.objects.create(function=function, version=function.version, handler=handler)
    function.handler = handler
    function.durable = durable
    function.description = description
    function.execution_timeout = timeout
    function.enabled = enabled
    if retention_days:
        function.retention_days = retention_days
    function.save()
    return function


@dataclass(frozen=True)
class FunctionLimits:
    """A function version's Lambda configuration: what one invocation may use."""

    timeout_seconds: int = DEFAULT_FUNCTION_TIMEOUT_SECONDS
    memory_mb: int = DEFAULT_FUNCTION_MEMORY_MB
    environment: tuple[tuple[str, str], ...] = ()

    @property
    def environment_variables(self) -> dict[str, str]:
        return dict(self.environment)


# Versions never change once written, so each process reads a version's limits once.
_limits_cache: dict[tuple[int, int], FunctionLimits] = {}


def limits_for_version(function_id: int, version: int) -> FunctionLimits:
    """The limits an execution pinned to ``version`` runs under (cached per process)."""
    key = (function_id, version)
    limits = _limits_cache.get(key)
    if limits is None:
        row = FunctionVersion.objects.filter(function_id=function_id, version=version).first()
        if row is None:  # a version row removed by hand: the defaults
            return FunctionLimits()
        limits = _limits_cache[key] = FunctionLimits(
            timeout_seconds=row.timeout_seconds,
            memory_mb=row.memory_mb,
            environment=tuple(sorted((row.environment or {}).items())),
        )
    return limits


def handler_for_version(function: Function, qualifier: str | None) -> tuple[int, str]:
    """The (version, handler path) an execution started with this qualifier pins."""
    if qualifier and qualifier.isdigit():
        pinned = function.versions.get(version=int(qualifier))
        return pinned.version, pinned.handler
    return function.version, function.handler
