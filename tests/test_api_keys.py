"""Access keys (CLI, admin, ``make run``'s development key) and SigV4 through Django's test client."""

from __future__ import annotations

import io
import json
import re
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client, override_settings

from durable_console.bootstrap import demo_setup
from executions import access_keys, services
from executions.api import auth
from executions.models import AccessKey
from tests.api_handlers import approval
from tests.engine_driver import register

pytestmark = pytest.mark.django_db


def durable(*args: str) -> str:
    out = io.StringIO()
    call_command("durable", *args, stdout=out)
    return out.getvalue()


def test_cli_creates_lists_and_revokes_keys() -> None:
    get_user_model().objects.create_user("ops")
    created = json.loads(durable("keys", "create", "--description", "ci", "--user", "ops"))
    key_id, secret = created["AccessKeyId"], created["SecretAccessKey"]
    assert re.fullmatch(r"AKIA[A-Z0-9]{16}", key_id)
    assert len(secret) == 40
    stored = AccessKey.objects.get(access_key_id=key_id)
    assert secret not in stored.secret_encrypted  # encrypted at rest
    assert access_keys.decrypt_secret(stored.secret_encrypted) == secret
    assert stored.user.username == "ops"

    listing = durable("keys", "list")
    assert key_id in listing and "active" in listing and secret not in listing
    assert "revoked at" in durable("keys", "revoke", key_id)
    assert "revoked" in durable("keys", "list")
    with pytest.raises(CommandError, match="ResourceNotFoundException"):
        durable("keys", "revoke", "AKIA0000000000000000")


def test_a_rotated_encryption_key_makes_old_secrets_unusable() -> None:
    issued = access_keys.key_create()
    with override_settings(DURABLE_ACCESS_KEY_SECRET="another-secret"):
        assert access_keys.key_for_request(issued.access_key_id).secret is None


def test_admin_shows_the_secret_once_and_revokes(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/executions/accesskey/add/", {"description": "from the admin", "user": ""}
    )
    assert response.status_code == 200
    key = AccessKey.objects.get(description="from the admin")
    secret = access_keys.decrypt_secret(key.secret_encrypted)
    page = response.content.decode()
    assert key.access_key_id in page and secret in page
    assert "no-store" in response["Cache-Control"]

    change_page = admin_client.get(f"/admin/executions/accesskey/{key.pk}/change/").content.decode()
    assert key.access_key_id in change_page and secret not in change_page
    admin_client.post(
        "/admin/executions/accesskey/",
        {"action": "revoke", "_selected_action": [key.pk]},
    )
    key.refresh_from_db()
    assert key.revoked_at is not None
    for model in ("function", "execution", "operation", "historyevent", "invocation"):
        assert admin_client.get(f"/admin/executions/{model}/").status_code == 200


def test_make_run_creates_one_development_key(settings: Any, tmp_path: Any) -> None:
    settings.VAR_DIR = tmp_path
    first = list(demo_setup())
    key_file = tmp_path / "dev-access-key.json"
    stored = json.loads(key_file.read_text())
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    usage = next(line for line in first if "aws lambda list-functions" in line)
    assert f"AWS_ACCESS_KEY_ID={stored['AccessKeyId']}" in usage
    assert "--endpoint-url http://127.0.0.1:" in usage
    second = list(demo_setup())
    assert AccessKey.objects.count() == 1
    assert any(stored["SecretAccessKey"] in line for line in second)
    access_keys.key_revoke(stored["AccessKeyId"])
    list(demo_setup())
    assert AccessKey.objects.filter(revoked_at__isnull=True).count() == 1  # replaced


# --- SigV4 through Django's test client (WSGI-style request, RAW_URI) -----------------------


def signed(client: Client, key: access_keys.IssuedKey, method: str, url: str, body: bytes = b"") -> Any:
    """Sign with botocore, send through the test client with the raw path in RAW_URI."""
    request = AWSRequest(method=method, url=f"http://testserver{url}", data=body)
    SigV4Auth(Credentials(key.access_key_id, key.secret_access_key), "lambda", "us-east-1").add_auth(request)
    parts = urlsplit(url)
    headers = {
        f"HTTP_{name.upper().replace('-', '_')}": value
        for name, value in request.headers.items()
        if name.lower() not in {"content-type", "content-length"}
    }
    return client.generic(
        method,
        url,
        body,
        content_type="application/json",
        RAW_URI=parts.path,
        HTTP_HOST="testserver",
        **headers,
    )


def test_sigv4_with_the_test_client_and_csrf_elsewhere() -> None:
    register("api-approval", approval)
    key = access_keys.key_create()
    client = Client(enforce_csrf_checks=True)
    arn = services.execution_start(function="api-approval", input_payload="{}").execution.arn
    path = f"/2025-12-01/durable-executions/{quote(arn, safe='')}"

    described = signed(client, key, "GET", path)
    assert described.status_code == 200, described.content
    assert described.json()["DurableExecutionArn"] == arn
    stopped = signed(client, key, "POST", path + "/stop", b'{"ErrorMessage": "enough"}')
    assert stopped.status_code == 200, stopped.content  # a POST without any CSRF token
    unsigned = client.get(path)
    assert unsigned.status_code == 403
    assert unsigned["X-Amzn-ErrorType"] == "MissingAuthenticationTokenException"
    # The rest of the site still checks CSRF.
    assert client.post("/admin/login/", {"username": "x", "password": "y"}).status_code == 403


def test_canonical_uri_double_encodes_like_botocore() -> None:
    raw = "/2025-12-01/durable-executions/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Af%3A%24LATEST%2Fx"
    assert auth.canonical_uri(raw) == raw.replace("%", "%25")
    assert auth.canonical_uri("/a/./b/../c//d") == "/a/c/d"
    assert auth.canonical_query("b=2&a=x%20y&a=1") == "a=1&a=x%20y&b=2"
