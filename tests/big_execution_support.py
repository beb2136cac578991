"""An execution with many operations, written in bulk (what the console's pages cost, not how it ran)."""

from __future__ import annotations

import datetime
import itertools

from executions.models import Execution, Function, HistoryEvent, Operation

NOW = datetime.datetime(2026, 1, 15, 12, 0, tzinfo=datetime.UTC)
_serial = itertools.count(1)


def big_execution(*, top: int, items: int) -> Execution:
    """``top`` top-level steps, a map of ``items`` iterations of two steps, a small parallel;
    two history events per operation. Written in bulk: what the page costs, not how it ran."""
    serial = next(_serial)
    function, _ = Function.objects.get_or_create(name="big", defaults={"handler": "tests.handlers:handler"})
    execution = Execution.objects.create(
        function=function,
        function_version=1,
        handler="tests.handlers:handler",
        name=f"big-{serial}",
        invocation_id=f"inv-{serial}",
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:big:$LATEST/durable-execution/big-{serial}/i",
        status="SUCCEEDED",
        input_payload="{}",
        started_at=NOW,
        ended_at=NOW + datetime.timedelta(minutes=5),
        execution_timeout=3600,
    )
    ops: list[Operation] = []

    def op(op_id: str, type_: str, sub_type: str = "", parent: str = "") -> None:
        at = NOW + datetime.timedelta(milliseconds=len(ops))
        ops.append(
            Operation(
                execution=execution, operation_id=op_id, position=len(ops) + 1, parent_id=parent,
                name=op_id, type=type_, sub_type=sub_type, status="SUCCEEDED", started_at=at,
                ended_at=at + datetime.timedelta(milliseconds=1), attempt=1 if type_ == "STEP" else 0,
            )
        )  # fmt: skip

    for index in range(top):
        op(f"step-{index}", "STEP", "Step")
    op("map", "CONTEXT", "Map")
    for item in range(items):
        op(f"item-{item}", "CONTEXT", "MapIteration", "map")
        for part in ("fetch", "store"):
            op(f"{part}-{item}", "STEP", "Step", f"item-{item}")
    op("fan-out", "CONTEXT", "Parallel")
    for branch in range(3):
        op(f"branch-{branch}", "CONTEXT", "ParallelBranch", "fan-out")
        op(f"branch-{branch}-step", "STEP", "Step", f"branch-{branch}")
    Operation.objects.bulk_create(ops)
    events = [
        HistoryEvent(
            execution=execution, event_id=index + 1, event_type=kind, operation_id=o.operation_id,
            name=o.name, timestamp=o.started_at, details={"Result": {"Payload": "{}", "Truncated": False}},
        )
        for index, (o, kind) in enumerate((o, kind) for o in ops for kind in ("Started", "Succeeded"))
    ]  # fmt: skip
    HistoryEvent.objects.bulk_create(events)
    return execution
