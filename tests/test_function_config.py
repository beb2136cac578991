"""A function version's Lambda configuration (Timeout, MemorySize, environment): the registry's
checks, versioning, what executions pin, the CLI, and GetFunction / ListFunctions over boto3.

The console's form is tested with the other registry screens in ``test_console_actions.py``.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from executions import operator
from executions.audit import Actor
from executions.engine import functions
from executions.engine.errors import InvalidParameterValue
from executions.engine.functions import function_register, limits_for_version
from executions.models import AuditEntry, Function, FunctionVersion
from tests.api_live import live_server
from tests.engine_driver import engine_driver, start

GREET = "tests.api_handlers:greet"
APPROVAL = "tests.api_handlers:approval"


@pytest.fixture(autouse=True)
def fresh_limits_cache() -> Iterator[None]:
    """Rolled-back tests can hand out the same function ids again; the cache must not outlive them."""
    functions._limits_cache.clear()
    yield
    functions._limits_cache.clear()


def versions(name: str) -> list[tuple[int, str, int, int, dict[str, str]]]:
    rows = FunctionVersion.objects.filter(function__name=name).order_by("version")
    return [(v.version, v.handler, v.timeout_seconds, v.memory_mb, v.environment) for v in rows]


def durable(*args: str) -> tuple[str, str]:
    """Run ``manage.py durable ARGS``; its stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    call_command("durable", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# --- the registry ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_version_1_carries_the_configuration() -> None:
    function = function_register(
        name="configured", handler=GREET, timeout_seconds=30, memory_mb=1024, environment={"STAGE": "test"}
    )
    assert (function.version, function.timeout_seconds, function.memory_mb) == (1, 30, 1024)
    assert function.environment == {"STAGE": "test"}
    assert versions("configured") == [(1, GREET, 30, 1024, {"STAGE": "test"})]
    limits = limits_for_version(function.pk, 1)
    assert (limits.timeout_seconds, limits.memory_mb, limits.environment_variables) == (
        30,
        1024,
        {"STAGE": "test"},
    )


@pytest.mark.django_db
def test_defaults_on_create_are_kept_by_updates_that_do_not_name_them() -> None:
    function_register(name="plainly", handler=GREET)
    assert versions("plainly") == [(1, GREET, 300, 512, {})]
    function_register(
        name="plainly", handler=GREET, timeout_seconds=60, memory_mb=256, environment={"A1": "x"}
    )
    # Description, enabled, execution timeout and retention apply in place: no new version,
    # and the Lambda settings left out (None) keep their values.
    function = function_register(
        name="plainly",
        handler=GREET,
        description="now described",
        enabled=False,
        execution_timeout=900,
        retention_days=3,
    )
    assert function.version == 2
    assert (function.timeout_seconds, function.memory_mb, function.environment) == (60, 256, {"A1": "x"})
    assert (function.description, function.enabled, function.execution_timeout, function.retention_days) == (
        "now described",
        False,
        900,
        3,
    )
    assert versions("plainly") == [(1, GREET, 300, 512, {}), (2, GREET, 60, 256, {"A1": "x"})]


@pytest.mark.django_db
def test_each_change_of_handler_or_configuration_makes_a_version_carrying_all_four() -> None:
    function_register(name="evolving", handler=GREET, environment={"STAGE": "dev"})
    function_register(name="evolving", handler=GREET, timeout_seconds=10)
    function_register(name="evolving", handler=GREET, memory_mb=2048)
    function_register(name="evolving", handler=GREET, environment={"STAGE": "prod"})
    function_register(name="evolving", handler=APPROVAL)
    # The same values again change nothing.
    function = function_register(
        name="evolving", handler=APPROVAL, timeout_seconds=10, memory_mb=2048, environment={"STAGE": "prod"}
    )
    assert function.version == 5
    assert versions("evolving") == [
        (1, GREET, 300, 512, {"STAGE": "dev"}),
        (2, GREET, 10, 512, {"STAGE": "dev"}),
        (3, GREET, 10, 2048, {"STAGE": "dev"}),
        (4, GREET, 10, 2048, {"STAGE": "prod"}),
        (5, APPROVAL, 10, 2048, {"STAGE": "prod"}),
    ]
    cleared = function_register(name="evolving", handler=APPROVAL, environment={})
    assert (cleared.version, cleared.environment) == (6, {})
    assert functions.handler_for_version(cleared, "4") == (4, GREET)
    assert functions.handler_for_version(cleared, None) == (6, APPROVAL)


BAD_CONFIGURATIONS = [
    ({"timeout_seconds": 0}, "Timeout must be a whole number of seconds from 1 to 900, got 0"),
    ({"timeout_seconds": 901}, "Timeout must be a whole number of seconds from 1 to 900, got 901"),
    ({"timeout_seconds": True}, "Timeout must be a whole number of seconds from 1 to 900, got True"),
    ({"timeout_seconds": "30"}, "Timeout must be a whole number of seconds from 1 to 900, got '30'"),
    ({"memory_mb": 127}, "MemorySize must be a whole number of MB from 128 to 10,240, got 127"),
    ({"memory_mb": 10_241}, "MemorySize must be a whole number of MB from 128 to 10,240, got 10241"),
    ({"environment": ["A=b"]}, "Environment variables must be a mapping of names to strings"),
    ({"environment": {"1ST": "x"}}, "Environment variable name '1ST' is invalid: it must match"),
    ({"environment": {"A": "x"}}, "Environment variable name 'A' is invalid"),  # Lambda wants 2+ chars
    ({"environment": {"MY-VAR": "x"}}, "Environment variable name 'MY-VAR' is invalid"),
    ({"environment": {"AWS_REGION": "eu-west-1"}}, "Environment variable AWS_REGION is reserved by Lambda"),
    ({"environment": {"_HANDLER": "x:y"}}, "Environment variable _HANDLER is reserved by Lambda"),
    ({"environment": {"AWS_SECRET_ACCESS_KEY": "s"}}, "AWS_SECRET_ACCESS_KEY is reserved by Lambda"),
    ({"environment": {"LAMBDA_TASK_ROOT": "/x"}}, "LAMBDA_TASK_ROOT is reserved by Lambda"),
    ({"environment": {"PORT": 8080}}, "Environment variable PORT must be a string, got int"),
    (
        {"environment": {"BIG": "x" * 4090}},
        "Environment variables take 4,100 bytes; Lambda allows at most 4 KB",
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("config", "message"), BAD_CONFIGURATIONS, ids=lambda v: str(v)[:40])
def test_a_refused_configuration_writes_nothing(config: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidParameterValue, match=re.escape(message)):
        operator.function_save(Actor.cli(), name="fresh", handler=GREET, **config)
    assert not Function.objects.exists() and not FunctionVersion.objects.exists()

    function_register(name="kept", handler=GREET, environment={"STAGE": "dev"})
    with pytest.raises(InvalidParameterValue, match=re.escape(message)):
        operator.function_save(Actor.cli(), name="kept", handler=APPROVAL, description="changed", **config)
    function = Function.objects.get(name="kept")
    assert (function.version, function.handler, function.description) == (1, GREET, "")
    assert versions("kept") == [(1, GREET, 300, 512, {"STAGE": "dev"})]
    assert not AuditEntry.objects.exists()


@pytest.mark.django_db
def test_the_environment_limit_is_4_kb_of_compact_json_and_tz_may_be_set() -> None:
    # {"BIG":"…"} is 10 bytes of JSON around the value.
    exactly = {"BIG": "x" * (4096 - 10)}
    assert function_register(name="edge", handler=GREET, environment=exactly).version == 1
    with pytest.raises(InvalidParameterValue, match="4,097 bytes"):
        function_register(name="edge", handler=GREET, environment={"BIG": "x" * (4097 - 10)})
    with_tz = function_register(name="edge", handler=GREET, environment={"TZ": "Europe/Paris"})
    assert with_tz.environment == {"TZ": "Europe/Paris"}


def test_environment_lines_parse_and_format_back() -> None:
    parsed = functions.parse_environment_lines(["B_URL=https://x/?a=b", "", "  A1=with = sign  ", "EMPTY="])
    assert parsed == {"B_URL": "https://x/?a=b", "A1": "with = sign  ", "EMPTY": ""}
    assert functions.format_environment_lines(parsed) == "A1=with = sign  \nB_URL=https://x/?a=b\nEMPTY="
    with pytest.raises(InvalidParameterValue, match="Expected KEY=VALUE, got 'NOPE'"):
        functions.parse_environment_lines(["NOPE"])
    with pytest.raises(InvalidParameterValue, match="Environment variable AB is given twice"):
        functions.parse_environment_lines(["AB=1", "AB=2"])


@pytest.mark.django_db(transaction=True)
def test_executions_keep_the_configuration_of_the_version_they_started_on() -> None:
    function_register(name="pinned", handler=APPROVAL, timeout_seconds=60, environment={"STAGE": "v1"})
    with engine_driver():
        before = start("pinned", {"doc": "a"})
        function_register(name="pinned", handler=APPROVAL, memory_mb=4096, environment={"STAGE": "v2"})
        after = start("pinned", {"doc": "b"})
        by_version = start("pinned:1", {"doc": "c"})  # a qualified start pins the old version
    assert (before.function_version, after.function_version) == (1, 2)
    old = limits_for_version(before.function_id, before.function_version)
    new = limits_for_version(after.function_id, after.function_version)
    assert (old.timeout_seconds, old.memory_mb, old.environment_variables) == (60, 512, {"STAGE": "v1"})
    assert (new.timeout_seconds, new.memory_mb, new.environment_variables) == (60, 4096, {"STAGE": "v2"})
    assert by_version.function_version == 1


# --- the CLI ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_cli_registers_timeout_memory_and_environment() -> None:
    out, err = durable(
        "functions", "register", "cli-fn", GREET,
        "--timeout-seconds", "45", "--memory-mb", "256",
        "--env", "STAGE=prod", "--env", "API_URL=https://api/?q=1",
        "--execution-timeout", "600", "--description", "from the CLI",
    )  # fmt: skip
    assert "cli-fn v1" in out and "45 s, 256 MB, 2 environment variables" in out and err == ""
    function = Function.objects.get(name="cli-fn")
    assert (function.timeout_seconds, function.memory_mb, function.execution_timeout) == (45, 256, 600)
    assert function.environment == {"STAGE": "prod", "API_URL": "https://api/?q=1"}
    assert function.description == "from the CLI"

    durable("functions", "register", "cli-fn", GREET, "--memory-mb", "512")  # environment kept
    durable("functions", "register", "cli-fn", GREET, "--clear-env")
    assert versions("cli-fn") == [
        (1, GREET, 45, 256, {"STAGE": "prod", "API_URL": "https://api/?q=1"}),
        (2, GREET, 45, 512, {"STAGE": "prod", "API_URL": "https://api/?q=1"}),
        (3, GREET, 45, 512, {}),
    ]
    entry = AuditEntry.objects.filter(action="function.save").order_by("id").first()
    assert entry is not None and entry.channel == "cli"
    assert entry.details["environment_keys"] == ["API_URL", "STAGE"]  # names, never values

    listing, _ = durable("functions", "list")
    assert f"cli-fn\tv3\tdurable\t45s\t512MB\t{GREET}" in listing


@pytest.mark.django_db
def test_cli_timeout_is_the_deprecated_execution_timeout() -> None:
    out, err = durable("functions", "register", "old-style", GREET, "--timeout", "120")
    assert "old-style v1" in out
    assert "--timeout is deprecated" in err and "use --execution-timeout" in err
    function = Function.objects.get(name="old-style")
    assert (function.execution_timeout, function.timeout_seconds) == (120, 300)
    _, quiet = durable("functions", "register", "old-style", GREET, "--execution-timeout", "130")
    assert quiet == "" and Function.objects.get(name="old-style").execution_timeout == 130
    with pytest.raises(CommandError, match="give only the latter"):
        durable("functions", "register", "old-style", GREET, "--timeout", "1", "--execution-timeout", "2")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeout-seconds", "901"], "InvalidParameterValueException: Timeout must be a whole number"),
        (["--memory-mb", "64"], "InvalidParameterValueException: MemorySize must be a whole number"),
        (["--env", "NOPE"], "InvalidParameterValueException: Expected KEY=VALUE, got 'NOPE'"),
        (["--env", "AWS_REGION=eu-west-1"], "Environment variable AWS_REGION is reserved by Lambda"),
        (["--env", "AB=1", "--clear-env"], "Give --env or --clear-env, not both"),
    ],
)
def test_cli_refuses_bad_values_with_the_services_message(args: list[str], message: str) -> None:
    with pytest.raises(CommandError) as refused:
        durable("functions", "register", "refused", GREET, *args)
    assert message in str(refused.value)
    assert not Function.objects.exists() and not AuditEntry.objects.exists()


# --- GetFunction and ListFunctions -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_get_function_and_list_functions_report_each_versions_configuration() -> None:
    from executions.api import access_keys

    function_register(name="api-config", handler=GREET, timeout_seconds=20, environment={"STAGE": "one"})
    function_register(name="api-config", handler=GREET, memory_mb=3008, environment={"STAGE": "two"})
    function_register(name="api-default", handler="tests.api_handlers:echo", durable=False)
    with live_server(workers=1) as server:
        client = server.client(access_keys.key_create(description="config tests"))
        latest = client.get_function(FunctionName="api-config")["Configuration"]
        first = client.get_function(FunctionName="api-config", Qualifier="1")["Configuration"]
        listed = client.list_functions()["Functions"]
        every = client.list_functions(FunctionVersion="ALL")["Functions"]

    def config(entry: dict[str, Any]) -> tuple[Any, ...]:
        return entry["Version"], entry["Timeout"], entry["MemorySize"], entry["Environment"]

    assert config(latest) == ("$LATEST", 20, 3008, {"Variables": {"STAGE": "two"}})
    assert config(first) == ("1", 20, 512, {"Variables": {"STAGE": "one"}})
    assert {e["FunctionName"]: config(e) for e in listed} == {
        "api-config": ("$LATEST", 20, 3008, {"Variables": {"STAGE": "two"}}),
        "api-default": ("$LATEST", 300, 512, {"Variables": {}}),
    }
    assert [(e["FunctionName"], *config(e)) for e in every if e["FunctionName"] == "api-config"] == [
        ("api-config", "$LATEST", 20, 3008, {"Variables": {"STAGE": "two"}}),
        ("api-config", "1", 20, 512, {"Variables": {"STAGE": "one"}}),
        ("api-config", "2", 20, 3008, {"Variables": {"STAGE": "two"}}),
    ]
    assert json.dumps(latest["Environment"])  # plain JSON, as boto3 parsed it


# --- the admin -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_shows_the_configuration_read_only_with_every_version(admin_client: Client) -> None:
    function_register(name="in-admin", handler=GREET, timeout_seconds=42, environment={"STAGE": "one"})
    function = function_register(name="in-admin", handler=GREET, memory_mb=1536)
    listing = admin_client.get("/admin/executions/function/").content.decode()
    assert "1536" in listing and "42" in listing
    page = admin_client.get(f"/admin/executions/function/{function.pk}/change/").content.decode()
    # Read-only: changing them must go through the registry, which makes a new version.
    for field in ("timeout_seconds", "memory_mb", "environment"):
        assert f'name="{field}"' not in page
    assert "1536" in page and "STAGE" in page and "Function versions" in page
    # The admin cannot save a change of the Lambda settings behind the registry's back.
    inline = {"versions-TOTAL_FORMS": "2", "versions-INITIAL_FORMS": "2"}
    for index, version in enumerate(function.versions.order_by("-version")):
        inline |= {f"versions-{index}-id": str(version.pk), f"versions-{index}-function": str(function.pk)}
    fields = {"description": "x", "enabled": "on", "execution_timeout": "60", "retention_days": "14"}
    saved = admin_client.post(
        f"/admin/executions/function/{function.pk}/change/", {**fields, **inline, "timeout_seconds": "900"}
    )
    assert saved.status_code == 302
    after = Function.objects.get(pk=function.pk)
    assert (after.description, after.timeout_seconds, after.version) == ("x", 42, 2)


@pytest.mark.django_db
def test_registration_checks_the_handler_kind_wherever_it_comes_from() -> None:
    """The service, not each caller, tells a @durable_execution handler from a plain one."""
    from executions.engine.functions import InvalidFunctionConfig, function_register, is_durable_handler
    from tests import console_handlers

    assert is_durable_handler(console_handlers.approval)
    assert not is_durable_handler(console_handlers.plain)
    with pytest.raises(InvalidFunctionConfig, match="plain callable") as plain_as_durable:
        function_register(name="kind-a", handler="tests.console_handlers:plain", durable=True)
    assert plain_as_durable.value.field == "handler"
    with pytest.raises(InvalidFunctionConfig, match="register it as a durable function") as durable_as_plain:
        function_register(name="kind-b", handler="tests.console_handlers:approval", durable=False)
    assert durable_as_plain.value.field == "durable"
    assert not Function.objects.filter(name__startswith="kind-").exists()
