"""Checkpointing over HTTP as an external handler does, and a table of bad requests.

The server runs without workers, so the test itself plays the handler: it
claims an invocation through the engine (``invocation_begin``, the JSON event
a remote handler would get) and checkpoints with boto3. Every bad request
must get AWS's error (status, ``X-Amzn-ErrorType``, body) and change nothing
in the database.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock
from urllib.parse import quote

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.httpsession import URLLib3Session
from django.forms.models import model_to_dict

from executions import services
from executions.api import access_keys
from executions.models import AccessKey, Execution, HistoryEvent, Invocation, Operation
from tests.api_handlers import approval
from tests.api_live import LiveServer, live_server
from tests.engine_driver import register

pytestmark = pytest.mark.django_db(transaction=True)

STEP_ID = "a" * 64
CALLBACK_OP_ID = "b" * 64


@pytest.fixture
def server() -> Iterator[LiveServer]:
    with live_server(workers=0) as live:  # the test is the handler
        yield live


@dataclass
class World:
    server: LiveServer
    key: access_keys.IssuedKey
    client: Any
    arn: str
    first_token: str
    token: str
    callback_id: str
    revoked: access_keys.IssuedKey


def claim_invocation(arn: str) -> services.InvocationInput:
    execution = Execution.objects.get(arn=arn)
    invocation = services.invocation_begin(execution.pk, worker="external-handler")
    assert invocation is not None
    return invocation


@pytest.fixture
def world(server: LiveServer) -> World:
    register("api-approval", approval)
    key = access_keys.key_create(description="errors")
    client = server.client(key)
    arn = services.execution_start(function="api-approval", input_payload="{}").execution.arn
    invocation = claim_invocation(arn)
    response = client.checkpoint_durable_execution(
        DurableExecutionArn=arn,
        CheckpointToken=invocation.token,
        Updates=[
            {
                "Id": CALLBACK_OP_ID,
                "Type": "CALLBACK",
                "Action": "START",
                "Name": "approval",
                "SubType": "Callback",
            }
        ],
    )
    (callback,) = response["NewExecutionState"]["Operations"]
    callback_id = callback["CallbackDetails"]["CallbackId"]
    client.send_durable_execution_callback_success(CallbackId=callback_id, Result=b"ok")
    revoked = access_keys.key_create(description="revoked")
    access_keys.key_revoke(revoked.access_key_id)
    return World(
        server, key, client, arn, invocation.token, response["CheckpointToken"], callback_id, revoked
    )


# --- the happy path an external handler takes --------------------------------------------------------


def test_checkpoint_and_state_over_http(world: World) -> None:
    client, arn = world.client, world.arn
    updates = [
        {"Id": STEP_ID, "Type": "STEP", "Action": "START", "Name": "ask", "SubType": "Step"},
        {"Id": STEP_ID, "Type": "STEP", "Action": "SUCCEED", "Payload": '"asked"'},
    ]
    first = client.checkpoint_durable_execution(
        DurableExecutionArn=arn, CheckpointToken=world.token, Updates=updates, ClientToken="c-1"
    )
    operations = {op["Id"]: op for op in first["NewExecutionState"]["Operations"]}
    # The callback completed since the handler last looked: it is in the delta too.
    assert operations[CALLBACK_OP_ID]["Status"] == "SUCCEEDED"
    assert operations[STEP_ID]["StepDetails"] == {"Attempt": 1, "Result": '"asked"'}
    assert isinstance(operations[STEP_ID]["StartTimestamp"], datetime.datetime)
    replay = client.checkpoint_durable_execution(
        DurableExecutionArn=arn, CheckpointToken=world.token, Updates=updates, ClientToken="c-1"
    )
    assert replay["CheckpointToken"] == first["CheckpointToken"]  # ClientToken idempotency

    token, pages, marker = first["CheckpointToken"], [], None
    while True:
        page = client.get_durable_execution_state(
            DurableExecutionArn=arn,
            CheckpointToken=token,
            MaxItems=1,
            **({"Marker": marker} if marker else {}),
        )
        pages.append([op["Type"] for op in page["Operations"]])
        if not (marker := page.get("NextMarker")):
            break
    assert pages == [["EXECUTION"], ["CALLBACK"], ["STEP"]]

    closing = client.checkpoint_durable_execution(
        DurableExecutionArn=arn,
        CheckpointToken=token,
        Updates=[
            {
                "Id": "execution-result-1",
                "Type": "EXECUTION",
                "Action": "SUCCEED",
                "Payload": '{"answer": "ok"}',
            }
        ],
    )
    assert "CheckpointToken" not in closing  # closed: the SDK settles
    described = client.get_durable_execution(DurableExecutionArn=arn)
    assert (described["Status"], described["Result"]) == ("SUCCEEDED", '{"answer": "ok"}')


# --- bad requests -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    name: str
    send: Callable[[World], Any]
    status: int
    code: str
    message: str = ""


def raw(
    world: World,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    query: str = "",
    headers: dict[str, str] | None = None,
    sign: bool = True,
    secret: str | None = None,
    key_id: str | None = None,
    region: str = "us-east-1",
    signed_at: datetime.datetime | None = None,
    body_after_signing: bytes | None = None,
) -> Any:
    """Send one request, signed by botocore's own SigV4 signer unless told otherwise."""
    url = world.server.url + path + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    if sign:
        credentials = Credentials(key_id or world.key.access_key_id, secret or world.key.secret_access_key)
        signer = SigV4Auth(credentials, "lambda", region)
        if signed_at is not None:
            with mock.patch("botocore.auth.get_current_datetime", return_value=signed_at):
                signer.add_auth(request)
        else:
            signer.add_auth(request)
    if body_after_signing is not None:
        request.data = body_after_signing
    return URLLib3Session().send(request.prepare())


def enc(value: str) -> str:
    return quote(value, safe="")


def checkpoint(world: World, body: Any, **kwargs: Any) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw(
        world, "POST", f"/2025-12-01/durable-executions/{enc(world.arn)}/checkpoint", body=data, **kwargs
    )


def step(payload_bytes: int) -> dict[str, Any]:
    return {
        "Id": STEP_ID,
        "Type": "STEP",
        "Action": "SUCCEED",
        "Name": "ask",
        "SubType": "Step",
        "Payload": "x" * payload_bytes,
    }


LIST = "/2015-03-31/functions"


def revoked(world: World) -> Any:
    key = world.revoked
    return raw(world, "GET", LIST, key_id=key.access_key_id, secret=key.secret_access_key)


BAD_REQUESTS = [
    Bad("unsigned", lambda w: raw(w, "GET", LIST, sign=False), 403, "MissingAuthenticationTokenException"),
    Bad(
        "wrong secret",
        lambda w: raw(w, "GET", LIST, secret="not-the-secret"),
        403,
        "InvalidSignatureException",
        "signature we calculated does not match",
    ),
    Bad(
        "unknown key id",
        lambda w: raw(w, "GET", LIST, key_id="AKIA0000000000000000"),
        403,
        "UnrecognizedClientException",
    ),
    Bad(
        "expired signature",
        lambda w: raw(
            w,
            "GET",
            LIST,
            signed_at=datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
            - datetime.timedelta(minutes=20),
        ),
        403,
        "InvalidSignatureException",
        "Signature expired",
    ),
    Bad("revoked key", revoked, 403, "UnrecognizedClientException"),
    Bad("other region", lambda w: raw(w, "GET", LIST, region="eu-west-1"), 403, "InvalidSignatureException"),
    Bad(
        "body changed after signing",
        lambda w: checkpoint(
            w,
            {"CheckpointToken": w.token},
            body_after_signing=json.dumps({"CheckpointToken": w.token, "Updates": []}).encode(),
        ),
        403,
        "InvalidSignatureException",
    ),
    Bad(
        "garbled authorization",
        lambda w: raw(
            w,
            "GET",
            LIST,
            sign=False,
            headers={"Authorization": "AWS4-HMAC-SHA256 Credential=x", "X-Amz-Date": "20250101T000000Z"},
        ),
        403,
        "IncompleteSignatureException",
    ),
    Bad(
        "malformed JSON",
        lambda w: checkpoint(w, b'{"CheckpointToken": '),
        400,
        "InvalidRequestContentException",
    ),
    Bad("body not an object", lambda w: checkpoint(w, [1, 2]), 400, "InvalidRequestContentException"),
    Bad(
        "missing token",
        lambda w: checkpoint(w, {"Updates": []}),
        400,
        "InvalidParameterValueException",
        "CheckpointToken",
    ),
    Bad(
        "token not base64",
        lambda w: checkpoint(w, {"CheckpointToken": "not base64!"}),
        400,
        "InvalidParameterValueException",
        "base64",
    ),
    Bad(
        "token too long",
        lambda w: checkpoint(w, {"CheckpointToken": "A" * 2052}),
        400,
        "InvalidParameterValueException",
        "CheckpointToken",
    ),
    Bad(
        "stale token",
        lambda w: checkpoint(w, {"CheckpointToken": w.first_token, "Updates": []}),
        400,
        "InvalidParameterValueException",
        "Invalid checkpoint token",
    ),
    Bad(
        "forged token",
        lambda w: checkpoint(w, {"CheckpointToken": "MTo1OjA6YWJj"}),
        400,
        "InvalidParameterValueException",
        "Invalid checkpoint token",
    ),
    Bad(
        "updates not a list",
        lambda w: checkpoint(w, {"CheckpointToken": w.token, "Updates": {}}),
        400,
        "InvalidParameterValueException",
        "Updates",
    ),
    Bad(
        "oversized step payload",
        lambda w: checkpoint(w, {"CheckpointToken": w.token, "Updates": [step(1024 * 1024 + 1)]}),
        400,
        "InvalidParameterValueException",
        "exceeds",
    ),
    Bad(
        "unknown action",
        lambda w: checkpoint(
            w, {"CheckpointToken": w.token, "Updates": [{"Id": STEP_ID, "Type": "STEP", "Action": "EXPLODE"}]}
        ),
        400,
        "InvalidParameterValueException",
        "Invalid action",
    ),
    Bad(
        "unknown execution",
        lambda w: raw(
            w,
            "POST",
            "/2025-12-01/durable-executions/" + enc(w.arn[:-4] + "ffff") + "/checkpoint",
            body=json.dumps({"CheckpointToken": w.token}).encode(),
        ),
        404,
        "ResourceNotFoundException",
    ),
    Bad(
        "malformed ARN",
        lambda w: raw(w, "GET", "/2025-12-01/durable-executions/not-an-arn"),
        400,
        "InvalidParameterValueException",
        "DurableExecutionArn",
    ),
    Bad(
        "state page too large",
        lambda w: raw(
            w,
            "GET",
            f"/2025-12-01/durable-executions/{enc(w.arn)}/state",
            query=f"CheckpointToken={enc(w.token)}&MaxItems=5000",
        ),
        400,
        "InvalidParameterValueException",
        "MaxItems",
    ),
    Bad(
        "history MaxItems negative",
        lambda w: raw(w, "GET", f"/2025-12-01/durable-executions/{enc(w.arn)}/history", query="MaxItems=-1"),
        400,
        "InvalidParameterValueException",
    ),
    Bad(
        "unknown callback",
        lambda w: raw(
            w, "POST", "/2025-12-01/durable-execution-callbacks/" + enc("bm9wZQ==") + "/succeed", body=b"x"
        ),
        404,
        "ResourceNotFoundException",
    ),
    Bad(
        "callback id not base64",
        lambda w: raw(w, "POST", "/2025-12-01/durable-execution-callbacks/a*b/heartbeat"),
        400,
        "InvalidParameterValueException",
        "base64",
    ),
    Bad(
        "double callback completion",
        lambda w: raw(
            w,
            "POST",
            "/2025-12-01/durable-execution-callbacks/" + enc(w.callback_id) + "/succeed",
            body=b"again",
        ),
        400,
        "CallbackTimeoutException",
    ),
    Bad(
        "callback error with unknown field",
        lambda w: raw(
            w,
            "POST",
            "/2025-12-01/durable-execution-callbacks/" + enc(w.callback_id) + "/fail",
            body=b'{"Oops": 1}',
        ),
        400,
        "InvalidParameterValueException",
    ),
    Bad(
        "oversized callback result",
        lambda w: raw(
            w,
            "POST",
            "/2025-12-01/durable-execution-callbacks/" + enc(w.callback_id) + "/succeed",
            body=b"x" * (1024 * 1024 + 1),
        ),
        400,
        "InvalidParameterValueException",
        "1 MiB",
    ),
    Bad(
        "invoke payload over 6 MB",
        lambda w: raw(
            w,
            "POST",
            "/2015-03-31/functions/api-approval/invocations",
            body=b'"' + b"x" * (6 * 1024 * 1024) + b'"',
        ),
        413,
        "RequestTooLargeException",
    ),
    Bad(
        "body over the API limit",
        lambda w: raw(
            w, "POST", "/2015-03-31/functions/api-approval/invocations", body=b"x" * (7 * 1024 * 1024)
        ),
        413,
        "RequestTooLargeException",
    ),
    Bad(
        "invoke payload not JSON",
        lambda w: raw(w, "POST", "/2015-03-31/functions/api-approval/invocations", body=b"{nope"),
        400,
        "InvalidRequestContentException",
    ),
    Bad(
        "bad execution name",
        lambda w: raw(
            w,
            "POST",
            "/2015-03-31/functions/api-approval/invocations",
            body=b"{}",
            headers={"X-Amz-Durable-Execution-Name": "no spaces allowed"},
        ),
        400,
        "InvalidParameterValueException",
        "DurableExecutionName",
    ),
    Bad(
        "bad invocation type",
        lambda w: raw(
            w,
            "POST",
            "/2015-03-31/functions/api-approval/invocations",
            body=b"{}",
            headers={"X-Amz-Invocation-Type": "Sometimes"},
        ),
        400,
        "InvalidParameterValueException",
        "InvocationType",
    ),
    Bad(
        "unknown function",
        lambda w: raw(w, "POST", "/2015-03-31/functions/nope/invocations", body=b"{}"),
        404,
        "ResourceNotFoundException",
    ),
    Bad(
        "listing with a bad date",
        lambda w: raw(
            w, "GET", "/2025-12-01/functions/api-approval/durable-executions", query="StartedAfter=yesterday"
        ),
        400,
        "InvalidParameterValueException",
        "StartedAfter",
    ),
    Bad(
        "pause reason too long",
        lambda w: raw(
            w,
            "POST",
            f"/2025-12-01/durable-executions/{enc(w.arn)}/pause",
            body=json.dumps({"Reason": "r" * 1025}).encode(),
        ),
        400,
        "InvalidParameterValueException",
        "Reason",
    ),
    Bad(
        "unknown operation", lambda w: raw(w, "GET", "/2025-12-01/whatever"), 404, "UnknownOperationException"
    ),
    Bad(
        "wrong method",
        lambda w: raw(w, "GET", f"/2025-12-01/durable-executions/{enc(w.arn)}/checkpoint"),
        404,
        "UnknownOperationException",
    ),
]


def snapshot() -> dict[str, Any]:
    """Everything a request could change; last_used_at is bookkeeping of the key itself."""
    keys = [
        {k: v for k, v in model_to_dict(key).items() if k != "last_used_at"}
        for key in AccessKey.objects.order_by("pk")
    ]
    return {
        model.__name__: [model_to_dict(row) for row in model.objects.order_by("pk")]
        for model in (Execution, Operation, HistoryEvent, Invocation)
    } | {"AccessKey": keys}


def test_bad_requests_get_aws_errors_and_change_nothing(world: World) -> None:
    mismatches = []
    for case in BAD_REQUESTS:
        before = snapshot()
        response = case.send(world)
        body = json.loads(response.content or b"{}")
        got = (response.status_code, response.headers.get("X-Amzn-ErrorType"), body.get("Type"))
        want = (case.status, case.code, "User")
        if got != want or case.message not in body.get("message", ""):
            mismatches.append(f"{case.name}: got {got} {body.get('message')!r}, want {want} {case.message!r}")
        if snapshot() != before:
            mismatches.append(f"{case.name}: the database changed")
    assert not mismatches, "\n".join(mismatches)


def test_server_errors_keep_the_aws_shape() -> None:
    """A bug answers 500 ServiceException (the SDK retries it); throttling is 429."""
    from executions.api.errors import aws_exception_handler
    from executions.engine.errors import TooManyRequests

    crashed = aws_exception_handler(RuntimeError("bug"), {})
    assert (crashed.status_code, crashed["X-Amzn-ErrorType"]) == (500, "ServiceException")
    assert crashed.data == {"Type": "Service", "message": "Internal service error"}
    throttled = aws_exception_handler(TooManyRequests("Rate exceeded"), {})
    assert (throttled.status_code, throttled["X-Amzn-ErrorType"]) == (429, "TooManyRequestsException")
