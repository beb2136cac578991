"""The Lambda-compatible API through a real boto3 ``lambda`` client against a live server.

Every operation of issue 3, with paging, filters and the errors each one
documents. botocore percent-encodes ARNs and callback ids in the path and
signs with SigV4, so these tests also cover routing and authentication.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from executions.api import access_keys
from executions.models import AuditEntry, Execution, Operation
from tests.api_handlers import approval, boom, echo, greet, invokes_for_tenant, rejects
from tests.api_live import LiveServer, live_server
from tests.engine_driver import register
from tests.polling import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server() -> Iterator[LiveServer]:
    with live_server() as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Any:
    return server.client(access_keys.key_create(description="boto3 tests"))


def error_of(call: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    response = caught.value.response
    return {
        "code": response["Error"]["Code"],
        "status": response["ResponseMetadata"]["HTTPStatusCode"],
        "message": response["Error"]["Message"],
    }


def start(client: Any, function: str, payload: Any, **kwargs: Any) -> str:
    response = client.invoke(
        FunctionName=function, InvocationType="Event", Payload=json.dumps(payload), **kwargs
    )
    assert response["StatusCode"] == 202
    return response["DurableExecutionArn"]


def wait_status(client: Any, arn: str, *statuses: str, timeout: float = 20) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        described = client.get_durable_execution(DurableExecutionArn=arn)
        return described if described["Status"] in statuses else None

    return wait_until(reached, timeout=timeout, message=f"{arn} to reach {statuses}")


def callback_id(client: Any, arn: str, name: str) -> str:
    def started() -> str | None:
        events = client.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
        for event in events:
            if event["EventType"] == "CallbackStarted" and event.get("Name") == name:
                return event["CallbackStartedDetails"]["CallbackId"]
        return None

    return wait_until(started, timeout=20, message=f"callback {name} of {arn}")


# --- functions -------------------------------------------------------------------------------


def test_list_and_get_functions(client: Any) -> None:
    register("api-greet", greet)
    register("api-approval", approval)
    register("api-echo", echo, durable=False)

    first = client.list_functions(MaxItems=2)
    assert [f["FunctionName"] for f in first["Functions"]] == ["api-approval", "api-echo"]
    second = client.list_functions(MaxItems=2, Marker=first["NextMarker"])
    assert [f["FunctionName"] for f in second["Functions"]] == ["api-greet"]
    assert "NextMarker" not in second
    paged = [
        f["FunctionName"]
        for page in client.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 1})
        for f in page["Functions"]
    ]
    assert paged == ["api-approval", "api-echo", "api-greet"]

    configuration = client.get_function(FunctionName="api-greet")["Configuration"]
    assert configuration["FunctionArn"] == "arn:aws:lambda:us-east-1:123456789012:function:api-greet"
    assert configuration["Runtime"] == "python3.11"
    assert configuration["Handler"] == "tests.api_handlers:greet"
    assert configuration["Version"] == "$LATEST"
    assert configuration["DurableConfig"]["ExecutionTimeout"] == 300
    assert isinstance(configuration["LastModified"], str)
    assert "DurableConfig" not in client.get_function(FunctionName="api-echo")["Configuration"]
    by_arn = client.get_function(FunctionName=configuration["FunctionArn"], Qualifier="1")
    assert by_arn["Configuration"]["Version"] == "1"

    missing = error_of(client.get_function, FunctionName="nope")
    assert (missing["code"], missing["status"]) == ("ResourceNotFoundException", 404)
    no_version = error_of(client.get_function, FunctionName="api-greet", Qualifier="7")
    assert no_version["code"] == "ResourceNotFoundException"


# --- invoke ----------------------------------------------------------------------------------


def test_invoke_request_response_waits_for_the_execution(client: Any) -> None:
    register("api-greet", greet)
    response = client.invoke(
        FunctionName="api-greet", Payload=json.dumps({"name": "ada"}), DurableExecutionName="ada-1"
    )
    assert response["StatusCode"] == 200
    assert json.loads(response["Payload"].read()) == {"greeting": "hello ada"}
    assert response["ExecutedVersion"] == "$LATEST"
    arn = response["DurableExecutionArn"]
    assert arn.startswith("arn:aws:lambda:us-east-1:123456789012:function:api-greet:$LATEST/")
    assert "/durable-execution/ada-1/" in arn
    assert "FunctionError" not in response

    # The same name and payload is the same execution; a different payload is refused.
    again = client.invoke(
        FunctionName="api-greet", Payload=json.dumps({"name": "ada"}), DurableExecutionName="ada-1"
    )
    assert again["DurableExecutionArn"] == arn
    conflict = error_of(
        client.invoke,
        FunctionName="api-greet",
        Payload=b'{"name": "bob"}',
        DurableExecutionName="ada-1",
    )
    assert (conflict["code"], conflict["status"]) == ("DurableExecutionAlreadyStartedException", 409)
    assert Execution.objects.count() == 1


def test_invoke_event_dry_run_and_function_errors(client: Any) -> None:
    register("api-greet", greet)
    register("api-rejects", rejects)
    register("api-echo", echo, durable=False)
    register("api-boom", boom, durable=False)

    arn = start(client, "api-greet", {"name": "eve"})
    described = wait_status(client, arn, "SUCCEEDED")
    assert json.loads(described["Result"]) == {"greeting": "hello eve"}

    dry = client.invoke(FunctionName="api-greet", InvocationType="DryRun", Payload=b"{}")
    assert dry["StatusCode"] == 204
    assert "DurableExecutionArn" not in dry
    assert Execution.objects.count() == 1

    failed = client.invoke(FunctionName="api-rejects", Payload=b'{"order": "o-1"}')
    assert failed["FunctionError"] == "Unhandled"
    error = json.loads(failed["Payload"].read())
    assert error["errorType"] == "tests.api_handlers.OrderRejected"
    assert error["errorMessage"] == "order o-1 rejected"

    plain = client.invoke(FunctionName="api-echo", Payload=b'{"x": 1}')
    assert json.loads(plain["Payload"].read()) == {"echo": {"x": 1}, "function": "api-echo"}
    assert "DurableExecutionArn" not in plain
    broken = client.invoke(FunctionName="api-boom", Payload=b"{}")
    assert broken["FunctionError"] == "Unhandled"
    assert json.loads(broken["Payload"].read())["errorMessage"] == "plain function failed"

    unknown = error_of(client.invoke, FunctionName="api-nope", Payload=b"{}")
    assert (unknown["code"], unknown["status"]) == ("ResourceNotFoundException", 404)
    not_json = error_of(client.invoke, FunctionName="api-greet", Payload=b"{oops")
    assert (not_json["code"], not_json["status"]) == ("InvalidRequestContentException", 400)
    too_big = error_of(
        client.invoke,
        FunctionName="api-greet",
        InvocationType="Event",
        Payload=json.dumps({"blob": "x" * (1024 * 1024)}),
    )
    assert (too_big["code"], too_big["status"]) == ("RequestTooLargeException", 413)
    assert Execution.objects.count() == 2


# --- callbacks, and reading an execution -----------------------------------------------------------


def test_callbacks_history_and_state_of_an_execution(client: Any) -> None:
    register("api-approval", approval)
    arn = start(client, "api-approval", {"doc": 7}, DurableExecutionName="doc-7")
    callback = callback_id(client, arn, "approval")
    assert "/" in callback or "+" in callback or "=" in callback  # routed although encoded

    client.send_durable_execution_callback_heartbeat(CallbackId=callback)
    client.send_durable_execution_callback_success(CallbackId=callback, Result=b"yes")
    described = wait_status(client, arn, "SUCCEEDED")
    assert json.loads(described["Result"]) == {"answer": "yes"}
    assert described["DurableExecutionName"] == "doc-7"
    assert described["FunctionArn"].endswith(":function:api-approval:1")
    assert isinstance(described["StartTimestamp"], datetime.datetime)
    assert described["EndTimestamp"] >= described["StartTimestamp"]
    assert described["InputPayload"] == '{"doc": 7}'
    bare = client.get_durable_execution(DurableExecutionArn=arn, IncludeExecutionData=False)
    assert "InputPayload" not in bare and "Result" not in bare

    (audited,) = AuditEntry.objects.filter(action="callback.succeed")  # who answered, through which key
    assert (audited.target, audited.channel, audited.details["result"]) == (arn, "api", "yes")
    assert (
        audited.details["operation"]
        == Operation.objects.get(execution__arn=arn, type="CALLBACK").operation_id
    )

    again = error_of(client.send_durable_execution_callback_success, CallbackId=callback, Result=b'"no"')
    assert (again["code"], again["status"]) == ("CallbackTimeoutException", 400)
    assert AuditEntry.objects.filter(action="callback.succeed").count() == 1  # the refusal left none
    unknown = error_of(
        client.send_durable_execution_callback_failure,
        CallbackId="bm9wZQ==",
        Error={"ErrorMessage": "x"},
    )
    assert (unknown["code"], unknown["status"]) == ("ResourceNotFoundException", 404)

    _check_history_paging(client, arn)
    missing = error_of(client.get_durable_execution, DurableExecutionArn=arn + "0")
    assert (missing["code"], missing["status"]) == ("ResourceNotFoundException", 404)


def test_callback_success_without_a_result_gives_the_handler_none(client: Any) -> None:
    """boto3 sends no body when Result is left out: the handler's callback.result() is None."""
    register("api-approval", approval)
    arn = start(client, "api-approval", {"doc": 8})
    client.send_durable_execution_callback_success(CallbackId=callback_id(client, arn, "approval"))
    assert json.loads(wait_status(client, arn, "SUCCEEDED")["Result"]) == {"answer": None}
    events = client.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
    (succeeded,) = [e for e in events if e["EventType"] == "CallbackSucceeded"]
    assert succeeded["CallbackSucceededDetails"]["Result"] == {"Truncated": False}


def test_chained_invoke_started_event_carries_the_tenant(client: Any) -> None:
    register("api-greet", greet)
    register("api-tenant", invokes_for_tenant)
    arn = start(client, "api-tenant", {"target": "api-greet", "tenant": "acme-1"})
    described = wait_status(client, arn, "SUCCEEDED")
    assert json.loads(described["Result"]) == {"child": {"greeting": "hello tenant"}}
    events = client.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
    (started,) = [e for e in events if e["EventType"] == "ChainedInvokeStarted"]
    details = started["ChainedInvokeStartedDetails"]
    assert (details["FunctionName"], details["TenantId"]) == ("api-greet", "acme-1")


def _check_history_paging(client: Any, arn: str) -> None:
    everything = client.get_durable_execution_history(DurableExecutionArn=arn, MaxItems=1000)
    events = everything["Events"]
    assert [e["EventId"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["EventType"] == "ExecutionStarted"
    assert events[-1]["EventType"] == "ExecutionSucceeded"
    assert {"CallbackStarted", "CallbackSucceeded", "InvocationCompleted"} <= {e["EventType"] for e in events}
    paged, marker = [], None
    while True:
        page = client.get_durable_execution_history(
            DurableExecutionArn=arn, MaxItems=2, **({"Marker": marker} if marker else {})
        )
        paged += page["Events"]
        if not (marker := page.get("NextMarker")):
            break
    assert [e["EventId"] for e in paged] == [e["EventId"] for e in events]
    newest = client.get_durable_execution_history(DurableExecutionArn=arn, ReverseOrder=True)
    assert newest["Events"][0]["EventId"] == events[-1]["EventId"]
    truncated = client.get_durable_execution_history(DurableExecutionArn=arn, IncludeExecutionData=False)[
        "Events"
    ][0]["ExecutionStartedDetails"]["Input"]
    assert truncated == {"Truncated": True}


def test_callback_failure_stop_pause_resume_and_delete(client: Any) -> None:
    register("api-approval", approval)
    failing = start(client, "api-approval", {"doc": 1})
    client.send_durable_execution_callback_failure(
        CallbackId=callback_id(client, failing, "approval"),
        Error={"ErrorType": "Rejected", "ErrorMessage": "no"},
    )
    assert wait_status(client, failing, "FAILED")["Error"]["ErrorType"]

    held = start(client, "api-approval", {"doc": 2})
    callback_id(client, held, "approval")
    assert (
        client.pause_durable_execution(DurableExecutionArn=held, Reason="audit")["ResponseMetadata"][
            "HTTPStatusCode"
        ]
        == 202
    )
    paused = client.get_durable_execution(DurableExecutionArn=held)
    assert paused["Status"] == "PAUSED"
    assert paused["PauseDetails"]["Reason"] == "audit"
    client.resume_durable_execution(DurableExecutionArn=held)
    assert client.get_durable_execution(DurableExecutionArn=held)["Status"] == "RUNNING"

    busy = error_of(client.delete_durable_execution, DurableExecutionArn=held)
    assert (busy["code"], busy["status"]) == ("ResourceConflictException", 409)
    stopped = client.stop_durable_execution(
        DurableExecutionArn=held, Error={"ErrorType": "Cancelled", "ErrorMessage": "by test"}
    )
    stopped_again = client.stop_durable_execution(DurableExecutionArn=held)
    assert stopped_again["StopTimestamp"] == stopped["StopTimestamp"]
    described = client.get_durable_execution(DurableExecutionArn=held)
    assert described["Status"] == "STOPPED"
    assert described["Error"] == {"ErrorType": "Cancelled", "ErrorMessage": "by test"}
    not_paused = error_of(client.resume_durable_execution, DurableExecutionArn=held)
    assert (not_paused["code"], not_paused["status"]) == ("ResourceConflictException", 409)

    deleted = client.delete_durable_execution(DurableExecutionArn=held)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert isinstance(deleted["DeletionRequestTimestamp"], datetime.datetime)
    gone = error_of(client.get_durable_execution, DurableExecutionArn=held)
    assert gone["code"] == "ResourceNotFoundException"


# --- listing ----------------------------------------------------------------------------------------


def test_list_durable_executions_by_function_filters_and_pages(client: Any) -> None:
    register("api-greet", greet)
    register("api-approval", approval)
    done = [start(client, "api-greet", {"name": f"n{i}"}, DurableExecutionName=f"g{i}") for i in range(5)]
    for arn in done:
        wait_status(client, arn, "SUCCEEDED")
    middle = Execution.objects.get(arn=done[2]).started_at
    waiting = start(client, "api-approval", {}, DurableExecutionName="w1")

    def names(**kwargs: Any) -> list[str]:
        response = client.list_durable_executions_by_function(**kwargs)
        return [e["DurableExecutionName"] for e in response["DurableExecutions"]]

    assert names(FunctionName="api-greet") == ["g4", "g3", "g2", "g1", "g0"]  # newest first
    assert names(FunctionName="api-greet", ReverseOrder=True) == ["g0", "g1", "g2", "g3", "g4"]
    assert names(FunctionName="api-greet", DurableExecutionName="g3") == ["g3"]
    assert names(FunctionName="api-greet", StartedAfter=middle) == ["g4", "g3"]
    assert names(FunctionName="api-greet", StartedBefore=middle) == ["g1", "g0"]
    assert names(FunctionName="api-greet", Statuses=["RUNNING", "FAILED"]) == []
    assert names(FunctionName="api-approval", Statuses=["RUNNING"]) == ["w1"]
    assert names(FunctionName="api-greet", Qualifier="$LATEST") == ["g4", "g3", "g2", "g1", "g0"]
    assert names(FunctionName="arn:aws:lambda:us-east-1:123456789012:function:api-greet") == [
        "g4",
        "g3",
        "g2",
        "g1",
        "g0",
    ]

    paged, marker = [], None
    while True:
        response = client.list_durable_executions_by_function(
            FunctionName="api-greet", MaxItems=2, **({"Marker": marker} if marker else {})
        )
        assert len(response["DurableExecutions"]) <= 2
        paged += [e["DurableExecutionArn"] for e in response["DurableExecutions"]]
        if not (marker := response.get("NextMarker")):
            break
    assert paged == list(reversed(done))
    summary = client.list_durable_executions_by_function(FunctionName="api-approval")["DurableExecutions"][0]
    assert summary["DurableExecutionArn"] == waiting
    assert summary["Status"] == "RUNNING"
    assert isinstance(summary["StartTimestamp"], datetime.datetime)

    bad_status = error_of(
        client.list_durable_executions_by_function, FunctionName="api-greet", Statuses=["DONE"]
    )
    assert (bad_status["code"], bad_status["status"]) == ("InvalidParameterValueException", 400)
    unknown = error_of(client.list_durable_executions_by_function, FunctionName="nope")
    assert unknown["code"] == "ResourceNotFoundException"
    bad_marker = error_of(client.list_durable_executions_by_function, FunctionName="api-greet", Marker="!!")
    assert bad_marker["code"] == "InvalidParameterValueException"
