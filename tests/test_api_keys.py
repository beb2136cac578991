"""Access keys (CLI, admin, ``make run``'s development key), SigV4 through Django's test client,
and what a key may do: its owner's groups, through boto3 against a live server."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client, override_settings

from durable_console.bootstrap import demo_setup
from executions import services
from executions.api import access_keys, auth
from executions.models import AccessKey, AuditEntry, Execution
from tests.api_handlers import approval
from tests.api_live import live_server
from tests.console_support import make_cast
from tests.engine_driver import register
from tests.in_process_runner import InProcessRunner

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
    admin_password = (tmp_path / "admin-password").read_text().strip()
    reviewer_password = (tmp_path / "reviewer-password").read_text().strip()
    assert any(admin_password in line for line in first) and any(reviewer_password in line for line in first)

    # Later runs print no secret (terminal scrollback, CI logs), only where each is kept.
    second = "\n".join(demo_setup())
    assert AccessKey.objects.count() == 1
    for secret in (stored["SecretAccessKey"], admin_password, reviewer_password):
        assert secret not in second
    for kept in ("admin-password", "reviewer-password", "dev-access-key.json"):
        assert str(tmp_path / kept) in second
    assert stored["AccessKeyId"] in second
    access_keys.key_revoke(stored["AccessKeyId"])
    third = list(demo_setup())
    assert AccessKey.objects.filter(revoked_at__isnull=True).count() == 1  # replaced
    replacement = json.loads(key_file.read_text())
    assert any(replacement["SecretAccessKey"] in line for line in third)  # new, so printed once


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


# --- what a key may do: its owner's groups --------------------------------------------------------


def refusal(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return {
        "code": response["Error"]["Code"],
        "status": response["ResponseMetadata"]["HTTPStatusCode"],
        "message": response["Error"]["Message"],
    }


def denied_entries() -> list[tuple[str, str, str, str, list[str]]]:
    return [
        (e.actor_name, e.channel, e.details["operation"], e.target, e.details["missing_permissions"])
        for e in AuditEntry.objects.filter(action="api.denied").order_by("id")
    ]


@pytest.mark.django_db(transaction=True)
def test_a_key_acts_with_its_owners_groups() -> None:
    cast = make_cast()
    register("api-approval", approval)
    deployment_key = access_keys.key_create(description="deployment")
    viewer_key = access_keys.key_create(user=cast["viewer"])
    operator_key = access_keys.key_create(user=cast["operator"])
    runner = InProcessRunner()  # the handler only needs to start; no sandbox to boot
    with contextlib.closing(runner), live_server(workers=1, runner=runner) as server:
        admin, viewer, operator = (server.client(k) for k in (deployment_key, viewer_key, operator_key))
        arn = admin.invoke(FunctionName="api-approval", InvocationType="Event", Payload="{}")[
            "DurableExecutionArn"
        ]

        # Viewers read...
        assert viewer.get_durable_execution(DurableExecutionArn=arn)["DurableExecutionArn"] == arn
        assert viewer.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
        assert [f["FunctionName"] for f in viewer.list_functions()["Functions"]] == ["api-approval"]
        listed = viewer.list_durable_executions_by_function(FunctionName="api-approval")
        assert [e["DurableExecutionArn"] for e in listed["DurableExecutions"]] == [arn]
        # ... and nothing else: refused before anything is looked up, so nothing changes.
        attempts = {
            "StopDurableExecution": lambda: viewer.stop_durable_execution(DurableExecutionArn=arn),
            "DeleteDurableExecution": lambda: viewer.delete_durable_execution(DurableExecutionArn=arn),
            "Invoke": lambda: viewer.invoke(
                FunctionName="api-approval", InvocationType="Event", Payload="{}"
            ),
            "PauseDurableExecution": lambda: viewer.pause_durable_execution(DurableExecutionArn=arn),
            "CheckpointDurableExecution": lambda: viewer.checkpoint_durable_execution(
                DurableExecutionArn=arn, CheckpointToken="AAAA"
            ),
            "SendDurableExecutionCallbackSuccess": lambda: viewer.send_durable_execution_callback_success(
                CallbackId="AAAA", Result=b"yes"
            ),
        }
        for operation, attempt in attempts.items():
            error = refusal(attempt)
            assert (error["code"], error["status"]) == ("AccessDeniedException", 403), operation
            assert f"User: viewer is not authorized to perform: lambda:{operation}" in error["message"]
        assert Execution.objects.get().status == "RUNNING"  # one execution, untouched

        # Operators act (start, stop) but do not delete.
        assert operator.invoke(FunctionName="api-approval", InvocationType="DryRun")["StatusCode"] == 204
        denied = refusal(lambda: operator.delete_durable_execution(DurableExecutionArn=arn))
        assert (denied["code"], denied["status"]) == ("AccessDeniedException", 403)
        assert "executions.delete_execution" in denied["message"]
        operator.stop_durable_execution(DurableExecutionArn=arn)
        assert Execution.objects.get().status == "STOPPED"
        # The key without an owner is the deployment's admin key: it may delete.
        admin.delete_durable_execution(DurableExecutionArn=arn)
        assert not Execution.objects.exists()

    viewer_id, operator_id = viewer_key.access_key_id, operator_key.access_key_id
    assert [entry[:4] for entry in denied_entries()] == [
        (viewer_id, "api", "StopDurableExecution", arn),
        (viewer_id, "api", "DeleteDurableExecution", arn),
        (viewer_id, "api", "Invoke", "api-approval"),
        (viewer_id, "api", "PauseDurableExecution", arn),
        (viewer_id, "api", "CheckpointDurableExecution", arn),
        (viewer_id, "api", "SendDurableExecutionCallbackSuccess", ""),  # a callback id is a credential
        (operator_id, "api", "DeleteDurableExecution", arn),
    ]
    assert denied_entries()[0][4] == ["executions.operate_execution"]
    stopped_by = AuditEntry.objects.get(action="execution.stop")
    assert (stopped_by.actor_name, stopped_by.actor) == (operator_id, cast["operator"])


def test_keys_of_people_without_access_are_refused_everything() -> None:
    cast = make_cast()
    register("api-approval", approval)
    arn = services.execution_start(function="api-approval", input_payload="{}").execution.arn
    path = f"/2025-12-01/durable-executions/{quote(arn, safe='')}"
    approver_key = access_keys.key_create(user=cast["approver"])  # an inbox, no executions
    leaver = get_user_model().objects.create_user("leaver")
    leaver.groups.add(*cast["operator"].groups.all())
    leaver_key = access_keys.key_create(user=leaver)
    client = Client()
    assert signed(client, leaver_key, "GET", path).status_code == 200

    leaver.is_active = False  # deactivating a person shuts their keys too
    leaver.save()
    for key in (approver_key, leaver_key):
        for method, url in (("GET", path), ("HEAD", path), ("GET", path + "/state?CheckpointToken=AAAA")):
            response = signed(client, key, method, url)
            assert response.status_code == 403, (key.key.user, method, url)
            assert response["X-Amzn-ErrorType"] == "AccessDeniedException"


def test_deleting_a_person_revokes_their_keys_instead_of_making_them_admin_keys() -> None:
    person = get_user_model().objects.create_user("temp")
    kept = access_keys.key_create(description="deployment")
    theirs = access_keys.key_create(user=person)
    person.delete()
    theirs.key.refresh_from_db()
    assert theirs.key.user is None and theirs.key.revoked_at is not None
    client = Client()
    refused = signed(client, theirs, "GET", "/2015-03-31/functions")
    assert refused.status_code == 403 and refused["X-Amzn-ErrorType"] == "UnrecognizedClientException"
    assert signed(client, kept, "GET", "/2015-03-31/functions").status_code == 200


def test_keys_list_and_admin_show_who_a_key_acts_as(admin_client: Client) -> None:
    get_user_model().objects.create_user("ops")
    owned = access_keys.key_create(user=get_user_model().objects.get(username="ops"))
    ownerless = access_keys.key_create(description="ci")
    rows = {line.split("\t")[0]: line.split("\t") for line in durable("keys", "list").splitlines()}
    assert rows[owned.access_key_id][3] == "ops"
    assert rows[ownerless.access_key_id][3] == "deployment admin key (no owner)"
    page = admin_client.get("/admin/executions/accesskey/").content.decode()
    assert "deployment admin key (no owner)" in page and "Acts as" in page
    add_form = admin_client.get("/admin/executions/accesskey/add/").content.decode()
    assert "admin key: every API operation" in add_form
