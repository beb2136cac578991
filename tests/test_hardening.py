"""Deployment hardening (issue 9): what may be a handler, HTTPS settings, login throttling,
password rules, and no secret or signed link in logs; nested JSON is a client error."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, get_connection
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from uvicorn.logging import AccessFormatter

from approvals.log_filters import RedactLinkTokens
from executions import services
from executions.api import access_keys
from executions.engine.errors import InvalidParameterValue
from executions.engine.functions import function_register, load_handler
from executions.models import AuditEntry, Execution, Function
from tests.api_handlers import approval
from tests.api_live import live_server
from tests.conftest import REPO_ROOT, child_process_env
from tests.console_support import make_cast
from tests.engine_driver import register
from tests.in_process_runner import InProcessRunner
from tests.test_api_keys import signed

pytestmark = pytest.mark.django_db

FUNCTION_FORM = {"description": "", "execution_timeout": "300", "retention_days": "7"}
DEEP_JSON = "[" * 100_000 + "]" * 100_000


# --- only the deployment's code is a handler ----------------------------------------------------

# Callables from the standard library that would run anything they are given.
FOREIGN_HANDLERS = ["pty:spawn", "os:system", "subprocess:run"]


def test_the_service_refuses_handlers_outside_the_deployments_modules() -> None:
    for handler in FOREIGN_HANDLERS:
        with pytest.raises(InvalidParameterValue, match="DURABLE_HANDLER_MODULES"):
            function_register(name="shell", handler=handler, durable=False)
    # A callable a listed module only imported is not that module's code.
    with pytest.raises(InvalidParameterValue, match="not in this deployment's handler modules"):
        function_register(name="shell", handler="tests.engine_driver:function_register")
    assert not Function.objects.exists()
    # Workers load handlers through the same check: a row written before the rule cannot run.
    with pytest.raises(InvalidParameterValue):
        load_handler("os:system")


def test_a_refused_module_is_never_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "probe_outside.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef handler(event, context):\n    return event\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(InvalidParameterValue):
        function_register(name="probe", handler="probe_outside:handler", durable=False)
    assert not marker.exists() and "probe_outside" not in sys.modules


def test_only_examples_by_default_and_listed_modules_by_prefix(settings: Any) -> None:
    settings.DURABLE_HANDLER_MODULES = ["examples"]
    assert callable(load_handler("examples.booking:handler"))
    with pytest.raises(InvalidParameterValue):
        load_handler("tests.api_handlers:greet")
    settings.DURABLE_HANDLER_MODULES = ["examples", "tests.api"]  # a prefix of dotted names only
    with pytest.raises(InvalidParameterValue):
        load_handler("tests.api_handlers:greet")
    settings.DURABLE_HANDLER_MODULES = ["examples", "tests.api_handlers"]
    assert callable(load_handler("tests.api_handlers:greet"))


def test_remote_handlers_only_at_listed_origins(settings: Any) -> None:
    settings.DURABLE_REMOTE_HANDLER_ORIGINS = ["https://fn.internal:9000", "http://127.0.0.1"]
    for allowed in ("https://fn.internal:9000/invoke", "http://127.0.0.1:8123/x", "http://127.0.0.1/"):
        assert load_handler(allowed).url == allowed  # type: ignore[attr-defined]
    for refused in (
        "http://169.254.169.254/latest/meta-data/",  # the cloud's metadata service
        "https://fn.internal:9001/invoke",
        "http://fn.internal:9000/invoke",
        "http://127.0.0.1:80@evil.example/",  # the host is evil.example
        "http://127.0.0.1:notaport/",
    ):
        with pytest.raises(InvalidParameterValue, match="DURABLE_REMOTE_HANDLER_ORIGINS"):
            load_handler(refused)
    settings.DURABLE_REMOTE_HANDLER_ORIGINS = []
    with pytest.raises(InvalidParameterValue, match="none"):
        function_register(name="remote", handler="http://127.0.0.1:8123/x")
    assert not Function.objects.exists()


def test_the_cli_and_the_console_form_refuse_them_alike() -> None:
    for handler in FOREIGN_HANDLERS:
        with pytest.raises(CommandError, match=r"InvalidParameterValueException: Handler .* is not in"):
            call_command("durable", "functions", "register", "shell", handler, "--plain")
    client = make_cast().client("admin")
    for handler in FOREIGN_HANDLERS:
        response = client.post(
            "/functions/new/", {**FUNCTION_FORM, "name": "shell", "handler": handler, "durable": ""}
        )
        assert response.status_code == 400 and b"DURABLE_HANDLER_MODULES" in response.content, handler
    assert not Function.objects.exists() and not AuditEntry.objects.exists()


# --- HTTPS settings: check --deploy -------------------------------------------------------------

PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "k" * 20 + uuid.uuid4().hex + uuid.uuid4().hex,
    "DJANGO_ALLOWED_HOSTS": "console.example.com",
    "DJANGO_SESSION_COOKIE_SECURE": "1",
    "DJANGO_CSRF_COOKIE_SECURE": "1",
    "DJANGO_SECURE_SSL_REDIRECT": "1",
    "DJANGO_SECURE_HSTS_SECONDS": "31536000",
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "DJANGO_SECURE_HSTS_PRELOAD": "1",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://console.example.com",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO",
    "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",  # not connected to: names the deployment kind
    "EMAIL_HOST": None,
    "EMAIL_BACKEND": None,
}
# Runs the real check, failing on any warning, then reports the settings the variables made.
CHECK_AND_REPORT = """
import json, django
django.setup()
from django.conf import settings
from django.core.management import call_command
call_command("check", "--deploy", "--fail-level", "WARNING")
print(json.dumps({name: getattr(settings, name) for name in (
    "SECURE_PROXY_SSL_HEADER", "CSRF_TRUSTED_ORIGINS", "EMAIL_BACKEND")}))
"""


def check_deploy(env: dict[str, str | None]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHECK_AND_REPORT],
        cwd=REPO_ROOT,
        env=child_process_env({"DJANGO_SETTINGS_MODULE": "durable_console.settings", **env}),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_the_production_variables() -> None:
    result = check_deploy(PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "WARNINGS" not in result.stderr and "security.W" not in result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "CSRF_TRUSTED_ORIGINS": ["https://console.example.com"],
        # Outside embedded mode and without a mail server, no e-mail body reaches a log.
        "EMAIL_BACKEND": "approvals.mail.BodilessLogBackend",
    }

    # The embedded defaults (plain http on 127.0.0.1) are what the check warns about.
    embedded = dict.fromkeys(PRODUCTION) | {"CELERY_BROKER_URL": None}
    warned = check_deploy(embedded)
    assert warned.returncode != 0
    for code in ("W004", "W008", "W012", "W016"):
        assert f"security.{code}" in warned.stderr


def test_https_redirect_spares_health_checks_and_trusts_the_proxy_header() -> None:
    with override_settings(
        SECURE_SSL_REDIRECT=True, SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https")
    ):
        client = Client()
        assert client.get("/healthz").status_code == 200
        redirected = client.get("/accounts/login/")
        assert redirected.status_code == 301 and redirected["Location"].startswith("https://")
        assert client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https").status_code == 200


# --- logins and passwords -----------------------------------------------------------------------


@pytest.fixture
def person() -> Iterator[Any]:
    # A name of its own: failure counts live in the (shared) cache, not in the test database.
    name = f"person-{uuid.uuid4().hex[:8]}"
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield get_user_model().objects.create_superuser(name, password="right horse battery")


def login(client: Client, username: str, password: str, address: str = "10.0.0.1", url: str = "") -> Any:
    data = {"username": username, "password": password, "next": "/"}
    return client.post(url or "/accounts/login/", data, REMOTE_ADDR=address)


def test_failed_logins_are_throttled_per_user_name_and_address(person: Any, settings: Any) -> None:
    settings.DURABLE_LOGIN_MAX_FAILURES = 3
    client = Client()
    for _ in range(2):
        assert b"didn't match" in login(client, person.username, "wrong").content
    assert login(client, person.username, "right horse battery").status_code == 302  # resets the count

    for _ in range(3):
        assert b"didn't match" in login(Client(), person.username, "wrong").content
    throttled = login(Client(), person.username, "right horse battery")  # even the right password
    assert throttled.status_code == 200 and b"Too many failed logins" in throttled.content
    assert "_auth_user_id" not in throttled.client.session
    admin = login(Client(), person.username, "right horse battery", url="/admin/login/")
    assert b"Too many failed logins" in admin.content  # the admin's form counts the same
    # Another address, or another user name from this one, is not held up.
    assert login(Client(), person.username, "right horse battery", address="10.0.0.2").status_code == 302
    assert b"didn't match" in login(Client(), "someone-else", "wrong").content


def test_passwords_meet_djangos_four_standard_validators() -> None:
    user = get_user_model()(username="grace-hopper")
    for password, complaint in (
        ("x7!Kq", "too short"),
        ("password123", "too common"),
        ("48291736405", "entirely numeric"),
        ("grace-hopper", "too similar"),
    ):
        with pytest.raises(ValidationError, match=complaint):
            validate_password(password, user)
    validate_password("correct horse battery staple", user)


# --- no signed link in any log ------------------------------------------------------------------


def test_without_a_mail_server_e_mails_are_logged_without_bodies(caplog: pytest.LogCaptureFixture) -> None:
    link = "http://console/approvals/verify/secret-token:abc:def/"
    message = EmailMessage("Confirm your e-mail address", f"Open {link}", "from@x", ["grace@example.com"])
    with caplog.at_level(logging.WARNING, logger="approvals.mail"):
        sent = get_connection("approvals.mail.BodilessLogBackend").send_messages([message])
    assert sent == 1
    assert "grace@example.com" in caplog.text and "Confirm your e-mail address" in caplog.text
    assert "secret-token" not in caplog.text and "Open" not in caplog.text


@pytest.fixture
def console_log() -> Iterator[io.StringIO]:
    """What the configured console handler writes (settings.LOGGING), captured."""
    (handler,) = [
        h for h in logging.getLogger().handlers if any(isinstance(f, RedactLinkTokens) for f in h.filters)
    ]
    buffer = io.StringIO()
    previous = handler.setStream(buffer)  # type: ignore[attr-defined]
    try:
        yield buffer
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]


def test_link_tokens_are_redacted_from_request_logs(console_log: io.StringIO) -> None:
    token = signing.dumps({"id": 999, "u": 1, "n": "0" * 32}, salt="approvals.link.review")
    for path in (f"/approvals/review/{token}/", f"/approvals/verify/{token}/"):
        assert Client().get(path).status_code >= 400  # no such request: logged by django.request
    logged = console_log.getvalue()
    assert "/approvals/review/[redacted]/" in logged and "/approvals/verify/[redacted]/" in logged
    assert token not in logged and token.split(":")[0] not in logged


def test_link_tokens_are_redacted_from_uvicorns_access_log() -> None:
    """`uvicorn durable_console.asgi:application` logs every request's path on its own logger."""
    token = signing.dumps({"id": 1, "n": "0" * 32}, salt="approvals.link.verify-email")
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s'))
    access_log = logging.getLogger("uvicorn.access")
    access_log.addHandler(handler)
    try:
        # How uvicorn's HTTP protocol logs a request (its formatter unpacks these five arguments).
        access_log.warning(
            '%s - "%s %s HTTP/%s" %d', "10.0.0.9:5000", "GET", f"/approvals/verify/{token}/", "1.1", 200
        )
    finally:
        access_log.removeHandler(handler)
    assert buffer.getvalue().strip() == '10.0.0.9:5000 - "GET /approvals/verify/[redacted]/ HTTP/1.1" 200 OK'


# --- nested JSON is the client's error, never a 5xx ---------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_deeply_nested_json_gets_400_not_500() -> None:
    register("api-approval", approval)
    key = access_keys.key_create()
    runner = InProcessRunner()
    with (
        contextlib.closing(runner),  # after the server's workers stopped
        live_server(workers=1, runner=runner) as server,
        pytest.raises(ClientError) as caught,
    ):
        server.client(key).invoke(FunctionName="api-approval", Payload=DEEP_JSON.encode())
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"]["Code"] == "InvalidRequestContentException"
    assert "nested too deeply" in response["Error"]["Message"]
    assert not Execution.objects.exists()


def test_deeply_nested_json_elsewhere_is_refused_precisely() -> None:
    register("api-approval", approval)
    arn = services.execution_start(function="api-approval", input_payload="{}").execution.arn
    checkpoint = f"/2025-12-01/durable-executions/{quote(arn, safe='')}/checkpoint"
    answer = signed(Client(), access_keys.key_create(), "POST", checkpoint, DEEP_JSON.encode())
    assert answer.status_code == 400 and answer["X-Amzn-ErrorType"] == "InvalidRequestContentException"

    form = (
        make_cast()
        .client("operator")
        .post("/functions/api-approval/start/", {"name": "", "input_payload": DEEP_JSON})
    )
    assert form.status_code == 400 and b"nested too deeply" in form.content
    with pytest.raises(CommandError, match="InvalidParameterValueException: Input payload is nested"):
        call_command("durable", "start", "api-approval", "--input", DEEP_JSON)
    assert Execution.objects.count() == 1


def test_an_execution_with_deeply_nested_input_still_renders() -> None:
    """Shallow enough for the API to parse, too deep for the templates' deeper stack."""
    register("api-approval", approval)
    deep = "[" * 900 + "]" * 900
    execution = services.execution_start(function="api-approval", input_payload=deep).execution
    client = make_cast().client("admin")
    page = client.get(f"/executions/{execution.pk}/")
    assert page.status_code == 200 and deep in page.content.decode()  # shown as text
    compared = client.get(f"/executions/{execution.pk}/compare/?with={execution.pk}")
    assert compared.status_code == 200
