"""The checkpoint fast path (executions/engine/checkpoint_fast.py): one statement when nothing
else changed the execution, the locking path as soon as something did."""

from __future__ import annotations

from typing import Any

import pytest
from aws_durable_execution_sdk_python import DurableContext, durable_execution
from django.db import connection

from executions import services
from executions.engine import checkpoint as checkpoint_service
from executions.engine.checkpoint_fast import CheckpointCache
from executions.engine.errors import InvalidCheckpointToken, InvalidParameterValue
from executions.models import Execution, HistoryEvent, Operation
from executions.services import InvocationInput
from tests.engine_driver import callback_id, refreshed, register, start

pytestmark = pytest.mark.django_db(transaction=True)


@durable_execution
def steps(event: Any, context: DurableContext) -> int:
    return sum(context.step(lambda _, i=i: i, name=f"s{i}") for i in range(3))


def _fast_expected() -> bool:
    """The fast path is PostgreSQL's; on SQLite every checkpoint takes the locking path."""
    return connection.vendor == "postgresql"


def _step(op_id: str, name: str, parent: str | None = None) -> list[dict[str, Any]]:
    start_update = {"Id": op_id, "Type": "STEP", "Action": "START", "Name": name, "SubType": "Step"}
    succeed = {**start_update, "Action": "SUCCEED", "Payload": f'"{name}"'}
    if parent:
        start_update["ParentId"] = succeed["ParentId"] = parent
    return [start_update, succeed]


def _begin() -> tuple[Execution, InvocationInput, CheckpointCache]:
    register("steps", steps)
    execution = start("steps", {})
    invocation = services.invocation_begin(execution.pk, worker="w")
    assert invocation is not None
    cache = CheckpointCache.for_invocation((op["Id"] for op in invocation.operations), complete=True)
    return execution, invocation, cache


def _checkpoint(execution: Execution, token: str, updates: Any, cache: CheckpointCache) -> dict[str, Any]:
    return checkpoint_service.checkpoint(execution.arn, token, updates, cache=cache)


def test_checkpoints_after_the_first_take_the_fast_path_and_write_what_the_locking_path_writes() -> None:
    execution, invocation, cache = _begin()
    first = _checkpoint(execution, invocation.token, _step("a", "one"), cache)
    assert cache.fast_checkpoints == 0  # nothing known yet: the locking path, which fills the cache
    second = _checkpoint(execution, first["CheckpointToken"], _step("b", "two"), cache)
    third = _checkpoint(execution, second["CheckpointToken"], _step("c", "three", parent=None), cache)
    assert cache.fast_checkpoints == (2 if _fast_expected() else 0)

    if _fast_expected():
        # What the statement wrote is exactly what the cache holds (types and precision survive JSON).
        written = Operation.objects.get(execution=execution, operation_id="b")
        cached = cache.operations["b"]
        for field in Operation._meta.concrete_fields:
            if field.attname != "id":
                assert getattr(written, field.attname) == getattr(cached, field.attname), field.attname
    assert [op["Id"] for op in second["NewExecutionState"]["Operations"]] == ["b"]
    assert second["NewExecutionState"]["Operations"][0]["Status"] == "SUCCEEDED"
    ops = list(Operation.objects.filter(execution=execution).order_by("position"))
    assert [(op.operation_id, op.status, op.result) for op in ops[1:]] == [
        ("a", "SUCCEEDED", '"one"'),
        ("b", "SUCCEEDED", '"two"'),
        ("c", "SUCCEEDED", '"three"'),
    ]
    assert [op.position for op in ops] == list(range(1, len(ops) + 1))
    events = list(HistoryEvent.objects.filter(execution=execution).order_by("event_id"))
    assert [event.event_id for event in events] == list(range(1, len(events) + 1))
    assert [event.event_type for event in events][-6:] == ["StepStarted", "StepSucceeded"] * 3
    stored = refreshed(execution)
    assert stored.checkpoint_seq == 3 and stored.seen_seq == stored.change_seq
    assert stored.operation_count == len(ops) and stored.event_count == len(events)
    # The token the fast path returned is the database's current one.
    fourth = _checkpoint(execution, third["CheckpointToken"], [], cache)
    assert "CheckpointToken" in fourth


def test_a_used_token_is_refused_without_writing() -> None:
    execution, invocation, cache = _begin()
    first = _checkpoint(execution, invocation.token, _step("a", "one"), cache)
    _checkpoint(execution, first["CheckpointToken"], _step("b", "two"), cache)
    with pytest.raises(InvalidCheckpointToken):
        _checkpoint(execution, first["CheckpointToken"], _step("x", "again"), cache)
    assert not Operation.objects.filter(execution=execution, operation_id="x").exists()


def test_an_invalid_batch_gets_the_locking_paths_error_and_writes_nothing() -> None:
    execution, invocation, cache = _begin()
    first = _checkpoint(execution, invocation.token, _step("a", "one"), cache)
    before = refreshed(execution)
    # "a" already succeeded: starting it again is an invalid transition.
    with pytest.raises(InvalidParameterValue):
        _checkpoint(execution, first["CheckpointToken"], _step("a", "one")[:1], cache)
    after = refreshed(execution)
    assert (after.checkpoint_seq, after.change_seq, after.event_count) == (
        before.checkpoint_seq,
        before.change_seq,
        before.event_count,
    )


def test_a_callback_answered_meanwhile_shows_in_the_next_delta() -> None:
    execution, invocation, cache = _begin()
    callback = {"Id": "cb", "Type": "CALLBACK", "Action": "START", "Name": "answer", "SubType": "Callback"}
    first = _checkpoint(execution, invocation.token, [callback], cache)
    second = _checkpoint(execution, first["CheckpointToken"], _step("a", "one"), cache)
    answered = Operation.objects.get(execution=execution, operation_id="cb")
    services.callback_succeed(callback_id(answered), '"yes"')
    fast_before = cache.fast_checkpoints
    third = _checkpoint(execution, second["CheckpointToken"], _step("b", "two"), cache)
    assert cache.fast_checkpoints == fast_before  # the guard saw the change: the locking path answered
    delta = {op["Id"]: op["Status"] for op in third["NewExecutionState"]["Operations"]}
    assert delta == {"cb": "SUCCEEDED", "b": "SUCCEEDED"}
    # ...and the cache is good again afterwards.
    _checkpoint(execution, third["CheckpointToken"], _step("c", "three"), cache)
    assert cache.fast_checkpoints == fast_before + (1 if _fast_expected() else 0)


def test_a_stopped_execution_refuses_the_next_checkpoint() -> None:
    execution, invocation, cache = _begin()
    first = _checkpoint(execution, invocation.token, _step("a", "one"), cache)
    second = _checkpoint(execution, first["CheckpointToken"], _step("b", "two"), cache)
    services.execution_stop(execution.arn)
    with pytest.raises(InvalidCheckpointToken):
        _checkpoint(execution, second["CheckpointToken"], _step("c", "three"), cache)
    assert not Operation.objects.filter(execution=execution, operation_id="c").exists()
    assert refreshed(execution).status == "STOPPED"


def test_a_paused_execution_applies_the_checkpoint_and_revokes_the_token() -> None:
    execution, invocation, cache = _begin()
    first = _checkpoint(execution, invocation.token, _step("a", "one"), cache)
    second = _checkpoint(execution, first["CheckpointToken"], _step("b", "two"), cache)
    services.execution_pause(execution.arn)
    third = _checkpoint(execution, second["CheckpointToken"], _step("c", "three"), cache)
    assert "CheckpointToken" not in third
    assert Operation.objects.get(execution=execution, operation_id="c").status == "SUCCEEDED"


def test_an_operation_the_invocation_was_not_shown_in_full_goes_the_locking_way() -> None:
    execution, invocation, _complete = _begin()
    paged = CheckpointCache.for_invocation([], complete=False)
    first = _checkpoint(execution, invocation.token, _step("a", "one"), paged)
    second = _checkpoint(execution, first["CheckpointToken"], _step("b", "two"), paged)
    _checkpoint(execution, second["CheckpointToken"], _step("c", "three"), paged)
    assert paged.fast_checkpoints == 0  # "b" and "c" might have existed on a page it was not given
    steps = Operation.objects.filter(execution=execution, type="STEP")
    statuses = dict(steps.values_list("operation_id", "status"))
    assert statuses == {"a": "SUCCEEDED", "b": "SUCCEEDED", "c": "SUCCEEDED"}


def test_a_whole_execution_through_the_worker_runtime_uses_the_fast_path() -> None:
    from executions.workers.runtime import HandlerRuntime

    register("steps", steps)
    execution = start("steps", {})
    runtime = HandlerRuntime()
    fast_counts: list[int] = []
    original_end = runtime.client.end_invocation

    def record_end() -> None:
        assert runtime.client.cache is not None
        fast_counts.append(runtime.client.cache.fast_checkpoints)
        original_end()

    runtime.client.end_invocation = record_end  # type: ignore[method-assign]
    try:
        invocation = services.invocation_begin(execution.pk, worker="w")
        assert invocation is not None
        from executions.engine.functions import limits_for_version

        result = runtime.run_durable(invocation, limits_for_version(invocation.function_id, 1))
        services.invocation_finish(execution.pk, invocation.invocation, output=result.output)
    finally:
        runtime.close()
    assert refreshed(execution).status == "SUCCEEDED"
    assert refreshed(execution).result == "3"
    # All three steps: the invocation came with the rows its first checkpoint needs.
    assert fast_counts == [3 if _fast_expected() else 0]


def test_state_pages_follow_positions_across_gaps_a_redrive_leaves() -> None:
    """Pages are index ranges after the last position (keyset), so deleted operations
    (a redrive resets interrupted ones) neither repeat nor hide a later one."""
    execution, invocation, cache = _begin()
    token = invocation.token
    for index in range(6):
        token = _checkpoint(execution, token, _step(f"s{index}", f"step {index}"), cache)["CheckpointToken"]
    Operation.objects.filter(execution=execution, operation_id__in=["s1", "s2"]).delete()
    seen: list[str] = []
    marker: str | None = None
    while True:
        page = checkpoint_service.get_state(execution.arn, token, marker, max_items=2)
        seen += [op["Id"] for op in page["Operations"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    remaining = Operation.objects.filter(execution=execution).order_by("position")
    expected = list(remaining.values_list("operation_id", flat=True))
    assert seen == expected
    assert "s3" in seen and "s1" not in seen
