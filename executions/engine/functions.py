"""The function registry: registering handlers and resolving function references.

A reference is what callers write to name a function (docs/api.md): a
name, ``name:qualifier``, a partial ARN ``account:function:name`` or a full ARN
in this service's account and region.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeGuard, cast
from urllib.parse import urlsplit

import aws_durable_execution_sdk_python
from django.conf import settings
from django.db import transaction

from executions.engine.errors import InvalidParameterValue, ResourceNotFound
from executions.engine.rows import rows
from executions.models import (
    DEFAULT_FUNCTION_MEMORY_MB,
    DEFAULT_FUNCTION_TIMEOUT_SECONDS,
    FUNCTION_MEMORY_RANGE,
    FUNCTION_TIMEOUT_RANGE,
    LABEL_FIELD_MAX_LENGTH,
    Function,
    FunctionVersion,
)
from executions.workers.remote import RemoteHandler, is_remote

FUNCTION_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# A label field: input keys joined by dots ("order_id", "customer.id").
LABEL_FIELD_PATTERN = re.compile(r"^[\w-]+(\.[\w-]+)*$")
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
    # Row I/O rather than the ORM: every start resolves its function, and the ORM's
    # query building cost more than the query (executions.engine.rows).
    found = rows(Function).select("name = %s", [parsed.name], limit=1)
    function = found[0] if found else None
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

    An ``http(s)://`` path names a handler hosted elsewhere (``executions.workers.remote``).
    Only the deployment's own code may be a handler (``DURABLE_HANDLER_MODULES``; remote
    ones: ``DURABLE_REMOTE_HANDLER_ORIGINS``): registering ``os:system`` would otherwise run
    anything. Workers load handlers through here too, so a function registered before a
    module was removed from the list stops running.
    """
    if is_remote(path):
        _check_remote_origin(path)
        return RemoteHandler(path)
    if not HANDLER_PATTERN.match(path):
        raise InvalidParameterValue(f"Handler must look like module.path:attribute, got {path!r}")
    module_name, attr = path.split(":")
    _check_handler_module(path, module_name)  # before the import: importing runs code
    try:
        module = importlib.import_module(module_name)
        handler = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidParameterValue(f"Cannot import handler {path}: {exc}") from exc
    if not callable(handler):
        raise InvalidParameterValue(f"Handler {path} is not callable")
    # A name the module only imported (``from subprocess import run``) is not its code.
    _check_handler_module(path, getattr(handler, "__module__", None) or "")
    return cast(Callable[..., Any], handler)


def _in_modules(module_name: str, prefixes: Iterable[str]) -> bool:
    return any(module_name == prefix or module_name.startswith(prefix + ".") for prefix in prefixes)


def _check_handler_module(path: str, module_name: str) -> None:
    allowed = settings.DURABLE_HANDLER_MODULES
    if not _in_modules(module_name, allowed):
        raise InvalidParameterValue(
            f"Handler {path} is not in this deployment's handler modules ({', '.join(allowed)}); "
            "list its package in DURABLE_HANDLER_MODULES"
        )


def _check_remote_origin(url: str) -> None:
    """A remote handler's URL must name an allowed origin: the worker POSTs to it and keeps
    the answer, so an arbitrary URL would let an admin reach the workers' internal network."""
    origins = settings.DURABLE_REMOTE_HANDLER_ORIGINS
    if not any(_origin_allows(origin, url) for origin in origins):
        raise InvalidParameterValue(
            f"Remote handler {url} is not at an allowed origin "
            f"(DURABLE_REMOTE_HANDLER_ORIGINS: {', '.join(origins) or 'none'})"
        )


def _origin_allows(origin: str, url: str) -> bool:
    """``scheme://host`` allows any port of that host; ``scheme://host:port`` that port only."""
    allowed, wanted = urlsplit(origin), urlsplit(url)
    if wanted.username is not None or wanted.password is not None:
        return False  # http://allowed@elsewhere/ goes elsewhere
    try:
        allowed_port, wanted_port = allowed.port, wanted.port
    except ValueError:  # not a port number
        return False
    same_host = (allowed.scheme, allowed.hostname) == (wanted.scheme, wanted.hostname)
    return bool(allowed.hostname) and same_host and allowed_port in (None, wanted_port)


# Lambda's pattern for environment variable names (API model, EnvironmentVariableName).
ENVIRONMENT_KEY_PATTERN = re.compile(r"^[a-zA-Z]([a-zA-Z0-9_])+$")
ENVIRONMENT_MAX_BYTES = 4 * 1024
# The keys Lambda sets itself and refuses in a function's configuration (Lambda Developer
# Guide, "Defined runtime environment variables"). TZ is no longer among them: since 2022
# the guide lists it as unreserved, so a function may set its time zone.
RESERVED_ENVIRONMENT_KEYS = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)


class InvalidFunctionConfig(InvalidParameterValue):
    """A refused Timeout, MemorySize or environment; ``field`` says which, so a form can point at it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def is_durable_handler(handler: object) -> bool:
    """Whether ``handler`` is the SDK's ``@durable_execution`` wrapper, not a plain callable.

    ``functools.wraps`` gives the wrapper the user function's name and module, so those
    cannot tell them apart; the wrapper's code, though, lives in the SDK's package, and it
    keeps the user's function as ``__wrapped__``. Both hold for any SDK version whose
    decorator wraps the handler, wherever in the package the wrapper is defined.
    """
    code = getattr(handler, "__code__", None)
    if code is None or not hasattr(handler, "__wrapped__"):
        return False
    return Path(code.co_filename).resolve().is_relative_to(_SDK_PACKAGE_DIR)


_SDK_PACKAGE_DIR = Path(aws_durable_execution_sdk_python.__file__).resolve().parent


def check_handler_kind(path: str, *, durable: bool) -> Callable[..., Any]:
    """Import the handler (a typo fails here, not at the first run) and check that it is a
    ``@durable_execution`` handler for a durable function and a plain callable otherwise."""
    handler = load_handler(path)
    if is_remote(path):
        return handler  # runs elsewhere: nothing here can inspect it
    if durable and not is_durable_handler(handler):
        raise InvalidFunctionConfig(
            "handler",
            f"{path} is a plain callable, not a @durable_execution handler: register it as a plain "
            "function, or decorate it.",
        )
    if not durable and is_durable_handler(handler):
        raise InvalidFunctionConfig(
            "durable", f"{path} is wrapped with @durable_execution: register it as a durable function."
        )
    return handler


def _whole_number(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)  # True is an int to Python


def check_timeout_seconds(value: object) -> int:
    """Lambda's Timeout: whole seconds, 1 to 900."""
    low, high = FUNCTION_TIMEOUT_RANGE
    if _whole_number(value) and low <= value <= high:
        return value
    raise InvalidFunctionConfig(
        "timeout_seconds",
        f"Timeout must be a whole number of seconds from {low} to {high}, got {value!r}",
    )


def check_memory_mb(value: object) -> int:
    """Lambda's MemorySize: whole MB, 128 to 10,240."""
    low, high = FUNCTION_MEMORY_RANGE
    if _whole_number(value) and low <= value <= high:
        return value
    raise InvalidFunctionConfig(
        "memory_mb", f"MemorySize must be a whole number of MB from {low} to {high:,}, got {value!r}"
    )


def check_environment(variables: object) -> dict[str, str]:
    """Lambda's Environment.Variables: valid, unreserved names, string values, 4 KB in all."""
    if not isinstance(variables, dict):
        raise InvalidFunctionConfig(
            "environment", "Environment variables must be a mapping of names to strings"
        )
    for key, value in variables.items():
        _check_environment_variable(key, value)
    # Lambda measures the variables as their compact JSON text.
    size = len(json.dumps(variables, separators=(",", ":"), ensure_ascii=False).encode())
    if size > ENVIRONMENT_MAX_BYTES:
        raise InvalidFunctionConfig(
            "environment",
            f"Environment variables take {size:,} bytes; "
            f"Lambda allows at most 4 KB ({ENVIRONMENT_MAX_BYTES:,} bytes)",
        )
    return dict(variables)


def _check_environment_variable(key: object, value: object) -> None:
    if not isinstance(key, str):
        raise InvalidFunctionConfig("environment", f"Environment variable name {key!r} must be a string")
    if key in RESERVED_ENVIRONMENT_KEYS:
        raise InvalidFunctionConfig(
            "environment", f"Environment variable {key} is reserved by Lambda and cannot be set"
        )
    if not ENVIRONMENT_KEY_PATTERN.match(key):
        raise InvalidFunctionConfig(
            "environment",
            f"Environment variable name {key!r} is invalid: it must match [a-zA-Z]([a-zA-Z0-9_])+ "
            "(a letter, then one or more letters, digits or _)",
        )
    if not isinstance(value, str):
        raise InvalidFunctionConfig(
            "environment", f"Environment variable {key} must be a string, got {type(value).__name__}"
        )
    if "\x00" in value:  # a process environment cannot hold NUL
        raise InvalidFunctionConfig("environment", f"Environment variable {key} contains a NUL character")


def parse_environment_lines(lines: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` lines (the CLI's ``--env``, the console's textarea) as a dict; blank lines skipped.

    Only the syntax is checked here; ``check_environment`` judges names and sizes.
    """
    variables: dict[str, str] = {}
    for line in lines:
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidFunctionConfig("environment", f"Expected KEY=VALUE, got {line!r}")
        if key in variables:
            raise InvalidFunctionConfig("environment", f"Environment variable {key} is given twice")
        variables[key] = value
    return variables


def format_environment_lines(variables: dict[str, str]) -> str:
    """The inverse of ``parse_environment_lines``, sorted by name."""
    return "\n".join(f"{key}={value}" for key, value in sorted(variables.items()))


@dataclass(frozen=True)
class VersionConfig:
    """What a FunctionVersion pins: a change to any of it makes a new version."""

    handler: str
    timeout_seconds: int = DEFAULT_FUNCTION_TIMEOUT_SECONDS
    memory_mb: int = DEFAULT_FUNCTION_MEMORY_MB
    environment: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, row: Function | FunctionVersion) -> VersionConfig:
        return cls(row.handler, row.timeout_seconds, row.memory_mb, dict(row.environment or {}))

    def fields(self) -> dict[str, Any]:
        return {
            "handler": self.handler,
            "timeout_seconds": self.timeout_seconds,
            "memory_mb": self.memory_mb,
            "environment": dict(self.environment),
        }


@dataclass(frozen=True)
class _ConfigChange:
    """The checked Lambda configuration a registration asks for; None keeps (or defaults) a value."""

    timeout_seconds: int | None
    memory_mb: int | None
    environment: dict[str, str] | None

    def applied_to(self, current: VersionConfig, handler: str) -> VersionConfig:
        changes: dict[str, Any] = {"handler": handler}
        for name in ("timeout_seconds", "memory_mb", "environment"):
            if (value := getattr(self, name)) is not None:
                changes[name] = value
        return replace(current, **changes)


def _checked_change(
    timeout_seconds: int | None, memory_mb: int | None, environment: dict[str, str] | None
) -> _ConfigChange:
    return _ConfigChange(
        timeout_seconds=None if timeout_seconds is None else check_timeout_seconds(timeout_seconds),
        memory_mb=None if memory_mb is None else check_memory_mb(memory_mb),
        environment=None if environment is None else check_environment(environment),
    )


def check_label_field(value: object) -> str:
    """The input field that labels executions: keys joined by dots, or "" for none."""
    if isinstance(value, str):
        value = value.strip()
        if not value or (len(value) <= LABEL_FIELD_MAX_LENGTH and LABEL_FIELD_PATTERN.match(value)):
            return value
    raise InvalidFunctionConfig(
        "label_field",
        f"Label field must be an input key, or keys joined by dots (customer.id): letters, digits, "
        f"_ and -, at most {LABEL_FIELD_MAX_LENGTH} characters; got {value!r}",
    )


def _checked_execution_timeout(execution_timeout: int | None) -> int:
    timeout = execution_timeout or settings.DURABLE_DEFAULT_EXECUTION_TIMEOUT_SECONDS
    if not 1 <= timeout <= 31_622_400:
        raise InvalidParameterValue("Execution timeout must be 1 to 31,622,400 seconds")
    return timeout


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
    timeout_seconds: int | None = None,
    memory_mb: int | None = None,
    environment: dict[str, str] | None = None,
    label_field: str | None = None,
) -> Function:
    """Create or update a function. Everything is checked before anything is written.

    A new handler, Timeout, MemorySize or environment makes a new version carrying all
    four, so running executions keep the configuration they started with (docs/architecture.md);
    description, enabled, execution timeout and retention apply to the function as is.
    ``None`` for the Lambda settings keeps the current value (the default on create), and so
    it does for ``label_field`` (the input field that labels executions started from now on).
    """
    if not FUNCTION_NAME_PATTERN.match(name):
        raise InvalidParameterValue(f"Invalid function name {name!r}: use [A-Za-z0-9_-], 1-64")
    check_handler_kind(handler, durable=durable)
    timeout = _checked_execution_timeout(execution_timeout)
    change = _checked_change(timeout_seconds, memory_mb, environment)
    labels = None if label_field is None else check_label_field(label_field)
    function = Function.objects.select_for_update().filter(name=name).first()
    if function is None:
        config = change.applied_to(VersionConfig(handler), handler)
        function = Function.objects.create(
            name=name,
            durable=durable,
            description=description,
            execution_timeout=timeout,
            retention_days=retention_days or 14,
            enabled=enabled,
            label_field=labels or "",
            **config.fields(),
        )
        FunctionVersion.objects.create(function=function, version=1, **config.fields())
        return function
    _new_version_if_changed(function, change.applied_to(VersionConfig.of(function), handler))
    function.durable = durable
    function.description = description
    function.execution_timeout = timeout
    function.enabled = enabled
    if retention_days:
        function.retention_days = retention_days
    if labels is not None:
        function.label_field = labels
    function.save()
    return function


def _new_version_if_changed(function: Function, config: VersionConfig) -> None:
    """Point ``function`` (unsaved) at ``config``, writing a new version if it differs."""
    if config == VersionConfig.of(function):
        return
    function.version += 1
    FunctionVersion.objects.create(function=function, version=function.version, **config.fields())
    for name, value in config.fields().items():
        setattr(function, name, value)


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
