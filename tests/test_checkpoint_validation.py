"""Every invalid checkpoint of docs/api.md/§2.8 gets its exact error and changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_durable_execution_sdk_python import DurableContext, durable_execution

from executions import services
from executions.engine import checkpoint as checkpoint_service
from executions.engine.errors import InvalidCheckpointToken, InvalidParameterValue, ResourceNotFound
from executions.engine.tokens import CheckpointToken
from executions.models import Execution, HistoryEvent, Operation
from tests.engine_driver import register, start

pytestmark = pytest.mark.django_db(transaction=True)


@durable_execution
def idle_handler(event: Any, context: DurableContext) -> str:
    return "unused: these tests checkpoint by hand"


CTX = "c" * 64
STEP = "s" * 64


def step(action: str, op_id: str = STEP, **extra: Any) -> dict[str, Any]:
    return {"Id": op_id, "Type": "STEP", "Action": action, "SubType": "Step", "Name": "work", **extra}


@pytest.fixture
def running() -> dict[str, Any]:
    """An execution with an invocation in flight, a STARTED context and a STARTED step."""
    register("idle", idle_handler)
    execution = start("idle", {"n": 1})
    invocation = services.invocation_begin(execution.pk, worker="test")
    assert invocation is not None
    response = checkpoint_service.checkpoint(
        execution.arn,
        invocation.token,
        [
            {"Id": CTX, "Type": "CONTEXT", "Action": "START", "SubType": "RunInChildContext", "Name": "ctx"},
            step("START"),
        ],
    )
    return {"arn": execution.arn, "token": response["CheckpointToken"], "pk": execution.pk}


def snapshot(pk: int) -> tuple[Any, ...]:
    execution = Execution.objects.get(pk=pk)
    ops = sorted(
        Operation.objects.filter(execution_id=pk).values_list(
            "operation_id", "status", "attempt", "touched_seq"
        )
    )
    return (
        execution.checkpoint_seq,
        execution.change_seq,
        execution.seen_seq,
        execution.status,
        execution.event_count,
        HistoryEvent.objects.filter(execution_id=pk).count(),
        tuple(ops),
    )


INVALID_BATCHES: list[tuple[str, list[dict[str, Any]], str]] = [
    (
        "two execution updates",
        [
            {"Id": "x", "Type": "EXECUTION", "Action": "SUCCEED", "Payload": "1"},
            {"Id": "y", "Type": "EXECUTION", "Action": "SUCCEED", "Payload": "1"},
        ],
        "multiple EXECUTION updates",
    ),
    (
        "execution update not last",
        [{"Id": "x", "Type": "EXECUTION", "Action": "SUCCEED", "Payload": "1"}, step("SUCCEED", "t" * 64)],
        "must be the last update",
    ),
    (
        "duplicate non-start pair",
        [step("SUCCEED", "u" * 64, Payload="1"), step("SUCCEED", "u" * 64, Payload="1")],
        "same operation twice",
    ),
    (
        "duplicate wait start",
        [
            {"Id": "w", "Type": "WAIT", "Action": "START", "WaitOptions": {"WaitSeconds": 5}},
            {"Id": "w", "Type": "WAIT", "Action": "START", "WaitOptions": {"WaitSeconds": 5}},
        ],
        "same operation twice",
    ),
    ("parent does not exist", [step("START", "v" * 64, ParentId="n" * 64)], "Invalid parent"),
    ("parent is a step", [step("START", "v" * 64, ParentId=STEP)], "Invalid parent"),
    ("name changed", [step("SUCCEED", Name="other", Payload="1")], "Inconsistent operation metadata"),
    ("subtype changed", [step("SUCCEED", SubType="Custom", Payload="1")], "Inconsistent operation metadata"),
    (
        "type changed",
        [{"Id": STEP, "Type": "CONTEXT", "Action": "SUCCEED", "Name": "work"}],
        "Inconsistent operation metadata",
    ),
    ("error too large", [step("FAIL", Error={"ErrorMessage": "x" * 40_000})], "Error exceeds"),
    ("payload too large", [step("SUCCEED", Payload="x" * (1024 * 1024 + 1))], "exceeds"),
    (
        "invoke payload too large",
        [
            {
                "Id": "i",
                "Type": "CHAINED_INVOKE",
                "Action": "START",
                "Payload": "x" * (1024 * 1024 + 1),
                "ChainedInvokeOptions": {"FunctionName": "idle"},
            }
        ],
        "exceeds",
    ),
    ("action not valid for type", [{"Id": "w", "Type": "WAIT", "Action": "SUCCEED"}], "Invalid action"),
    ("callback succeed", [{"Id": "k", "Type": "CALLBACK", "Action": "SUCCEED"}], "Invalid action"),
    ("unknown type", [{"Id": "k", "Type": "TIMER", "Action": "START"}], "Invalid operation Type"),
    ("step start when started", [step("START")], "in state STARTED"),
    ("retry without options", [step("RETRY", Error={"ErrorMessage": "e"})], "StepOptions is required"),
    (
        "retry with error and payload",
        [step("RETRY", Error={"ErrorMessage": "e"}, Payload="1", StepOptions={"NextAttemptDelaySeconds": 1})],
        "both Error and Payload",
    ),
    ("fail with payload", [step("FAIL", Payload="1")], "Cannot provide a Payload"),
    ("succeed with error", [step("SUCCEED", Error={"ErrorMessage": "e"})], "Cannot provide an Error"),
    (
        "context started twice",
        [{"Id": CTX, "Type": "CONTEXT", "Action": "START", "SubType": "RunInChildContext", "Name": "ctx"}],
        "in state STARTED",
    ),
    ("wait without seconds", [{"Id": "w", "Type": "WAIT", "Action": "START"}], "WaitOptions is required"),
    (
        "wait zero seconds",
        [{"Id": "w", "Type": "WAIT", "Action": "START", "WaitOptions": {"WaitSeconds": 0}}],
        "WaitSeconds must be",
    ),
    ("wait cancel when absent", [{"Id": "w", "Type": "WAIT", "Action": "CANCEL"}], "in state absent"),
    (
        "invoke without options",
        [{"Id": "i", "Type": "CHAINED_INVOKE", "Action": "START"}],
        "ChainedInvokeOptions is required",
    ),
    (
        "bad tenant",
        [
            {
                "Id": "i",
                "Type": "CHAINED_INVOKE",
                "Action": "START",
                "ChainedInvokeOptions": {"FunctionName": "idle", "TenantId": "bad\ttenant"},
            }
        ],
        "Invalid TenantId",
    ),
    (
        "callback negative timeout",
        [{"Id": "k", "Type": "CALLBACK", "Action": "START", "CallbackOptions": {"TimeoutSeconds": -1}}],
        "TimeoutSeconds must be",
    ),
    (
        "execution succeed with error",
        [{"Id": "x", "Type": "EXECUTION", "Action": "SUCCEED", "Error": {"ErrorMessage": "e"}}],
        "Cannot provide an Error",
    ),
    (
        "execution fail with payload",
        [{"Id": "x", "Type": "EXECUTION", "Action": "FAIL", "Payload": "1"}],
        "Cannot provide a Payload",
    ),
    ("bad id", [step("START", "not valid!")], "Invalid operation Id"),
    ("bad subtype", [step("START", "q" * 64, SubType="has space")], "Invalid SubType"),
    ("name too long", [step("START", "q" * 64, Name="n" * 257)], "Invalid Name"),
    ("non-string payload", [step("SUCCEED", Payload={"a": 1})], "Payload must be a string"),
    ("unknown error field", [step("FAIL", Error={"Oops": "x"})], "Unknown Error field"),
    ("updates not a list", {"Id": "x"}, "Updates must be a list"),  # type: ignore[list-item]
]


@pytest.mark.parametrize(
    ("label", "updates", "message"), INVALID_BATCHES, ids=[c[0] for c in INVALID_BATCHES]
)
def test_invalid_checkpoint_is_refused_and_changes_nothing(
    running: dict[str, Any], label: str, updates: list[dict[str, Any]], message: str
) -> None:
    before = snapshot(running["pk"])
    with pytest.raises(InvalidParameterValue) as caught:
        checkpoint_service.checkpoint(running["arn"], running["token"], updates)
    assert not isinstance(caught.value, InvalidCheckpointToken)
    assert caught.value.code == "InvalidParameterValueException"
    assert message in caught.value.message
    assert snapshot(running["pk"]) == before
    # The token was not consumed: a valid batch with it still works.
    ok = checkpoint_service.checkpoint(running["arn"], running["token"], [step("SUCCEED", Payload="1")])
    assert ok["CheckpointToken"]


def test_stale_token_is_refused_with_retryable_message(running: dict[str, Any]) -> None:
    checkpoint_service.checkpoint(running["arn"], running["token"], [])
    before = snapshot(running["pk"])
    with pytest.raises(InvalidCheckpointToken) as caught:
        checkpoint_service.checkpoint(running["arn"], running["token"], [step("SUCCEED", Payload="1")])
    assert caught.value.message.startswith("Invalid checkpoint token")
    assert snapshot(running["pk"]) == before


@pytest.mark.parametrize(
    "token",
    ["", "not base64!", "Zm9vOmJhcg==", CheckpointToken(999999, 1, 1).encode()],
    ids=["empty", "not-base64", "wrong-shape", "forged-signature"],
)
def test_malformed_tokens_are_refused(running: dict[str, Any], token: str) -> None:
    before = snapshot(running["pk"])
    with pytest.raises(InvalidParameterValue):
        checkpoint_service.checkpoint(running["arn"], token, [])
    assert snapshot(running["pk"]) == before


def test_token_of_a_superseded_invocation_is_refused(running: dict[str, Any]) -> None:
    services.invocation_finish(running["pk"], 1, output={"Status": "PENDING"})
    with pytest.raises(InvalidCheckpointToken):
        checkpoint_service.checkpoint(running["arn"], running["token"], [])


def test_closed_execution_refuses_checkpoints(running: dict[str, Any]) -> None:
    services.execution_stop(running["arn"])
    with pytest.raises(InvalidCheckpointToken, match="closed"):
        checkpoint_service.checkpoint(running["arn"], running["token"], [])


def test_unknown_execution_is_not_found(running: dict[str, Any]) -> None:
    with pytest.raises(ResourceNotFound):
        checkpoint_service.checkpoint(running["arn"] + "x", running["token"], [])


def test_empty_checkpoint_rotates_token_and_returns_delta(running: dict[str, Any]) -> None:
    response = checkpoint_service.checkpoint(running["arn"], running["token"], [])
    assert response["CheckpointToken"] != running["token"]
    assert response["NewExecutionState"]["Operations"] == []


def test_unknown_invoke_target_fails_in_the_same_response(running: dict[str, Any]) -> None:
    response = checkpoint_service.checkpoint(
        running["arn"],
        running["token"],
        [
            {
                "Id": "i",
                "Type": "CHAINED_INVOKE",
                "Action": "START",
                "Name": "call",
                "SubType": "ChainedInvoke",
                "Payload": json.dumps({"a": 1}),
                "ChainedInvokeOptions": {"FunctionName": "nope"},
            }
        ],
    )
    (op,) = response["NewExecutionState"]["Operations"]
    assert op["Status"] == "FAILED"
    assert op["ChainedInvokeDetails"]["Error"]["ErrorType"] == "ResourceNotFoundException"
    assert Operation.objects.get(execution_id=running["pk"], operation_id="i").input_payload is None


def test_client_token_replays_the_cached_response(running: dict[str, Any]) -> None:
    first = checkpoint_service.checkpoint(
        running["arn"], running["token"], [step("SUCCEED", Payload="1")], "client-1"
    )
    again = checkpoint_service.checkpoint(
        running["arn"], running["token"], [step("SUCCEED", Payload="1")], "client-1"
    )
    assert again["CheckpointToken"] == first["CheckpointToken"]
    assert Operation.objects.get(execution_id=running["pk"], operation_id=STEP).attempt == 1
