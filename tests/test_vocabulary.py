"""The vocabulary names the SDK's wire strings, and its tables say what each status allows."""

from __future__ import annotations

import json

from aws_durable_execution_sdk_python import lambda_service as sdk

from executions import vocabulary as v


def test_operation_words_are_the_sdks() -> None:
    pairs = [
        (v.OperationType, sdk.OperationType),
        (v.OperationStatus, sdk.OperationStatus),
        (v.OperationAction, sdk.OperationAction),
        (v.OperationSubType, sdk.OperationSubType),
    ]
    for ours, theirs in pairs:
        assert {m.name: m.value for m in ours} == {m.name: m.value for m in theirs}, ours.__name__


def test_members_are_their_strings() -> None:
    assert v.OperationType.STEP == "STEP"
    assert "Step" in {v.OperationSubType.STEP}
    assert json.dumps({"Status": v.OperationStatus.STARTED}) == '{"Status": "STARTED"}'


def test_plain_tables_hold_exact_strings() -> None:
    key = (v.OperationType.STEP, v.OperationAction.START)
    allowed_from = {key: frozenset({None, v.OperationStatus.READY})}
    table = v.plain(allowed_from)
    ((key, allowed),) = table.items()
    assert all(type(word) is str for word in key)
    assert {type(word) for word in allowed} == {type(None), str}
    assert key == ("STEP", "START")


def test_actions_each_status_allows() -> None:
    assert v.statuses_allowing(v.ExecutionAction.STOP) == v.ACTIVE_EXECUTION_STATUSES
    assert v.statuses_allowing(v.ExecutionAction.REDRIVE) == v.REDRIVABLE_STATUSES
    assert set(v.statuses_allowing(v.ExecutionAction.DELETE)) == v.TERMINAL_EXECUTION_STATUSES
    assert set(v.statuses_allowing(v.ExecutionAction.RERUN)) == set(v.ExecutionStatus)
    assert v.allows("PAUSED", "resume") and not v.allows("RUNNING", "resume")
    assert v.allows("RUNNING", "pause") and not v.allows("PAUSED", "pause")
    assert not v.allows("SUCCEEDED", v.ExecutionAction.COMPLETE_CALLBACK)
