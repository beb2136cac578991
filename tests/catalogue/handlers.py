"""Catalogue handlers: steps, serdes, waits, chained invokes and whole-execution behaviour.

Callback handlers live in ``handlers_callbacks.py``; map, parallel, child
contexts, ``with_retry`` and ``wait_for_condition`` in ``handlers_batch.py``.
Each handler's docstring says what it covers.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

from aws_durable_execution_sdk_python import (
    DurableContext,
    InvokeError,
    RetryableSerDesError,
    StepContext,
    StepError,
    durable_execution,
    durable_step,
)
from aws_durable_execution_sdk_python.config import (
    Duration,
    StepConfig,
    StepSemantics,
)
from aws_durable_execution_sdk_python.retries import RetryPresets
from aws_durable_execution_sdk_python.serdes import (
    ExtendedTypeSerDes,
    JsonSerDes,
    SerDes,
    SerDesContext,
)

from tests.catalogue._support import (
    CatalogueError,
    bump,
    bump_arn,
    describe,
    fast_retry,
)

NO_RETRY = StepConfig(retry_strategy=RetryPresets.none())

# --------------------------------------------------------------------------- steps


@durable_step
def add(_: StepContext, a: int, b: int) -> int:
    """A decorated step; its name comes from the function (``add``)."""
    return a + b


@durable_execution
def steps_succeed(event: dict, context: DurableContext) -> dict:
    """Three sequential steps (named, decorated and unnamed) that succeed and use input fields."""
    a = context.step(lambda _: event["a"] * 10, name="scale")
    b = context.step(add(a, event["b"]))
    c = context.step(lambda _: b + 1)
    return {"a": a, "b": b, "c": c}


@durable_execution
def step_fails_caught(event: dict, context: DurableContext) -> dict:
    """A non-retryable step failure (RetryPresets.none()) caught by the handler as StepError."""

    def explode(_: StepContext) -> None:
        raise ValueError("bad value")

    try:
        context.step(explode, name="explode", config=NO_RETRY)
    except StepError as err:
        after = context.step(lambda _: "recovered", name="after-failure")
        return {"error": describe(err), "after": after}
    return {"error": None}


@durable_execution
def step_fails_uncaught(event: dict, context: DurableContext) -> dict:
    """A non-retryable step failure with a user error type left to fail the execution."""

    def explode(_: StepContext) -> None:
        raise CatalogueError("step blew up")

    context.step(lambda _: "fine", name="before")
    context.step(explode, name="explode", config=NO_RETRY)
    return {"unreachable": True}


@durable_execution
def step_retry_then_succeed(event: dict, context: DurableContext) -> dict:
    """A step failing on attempts 1 and 2 and succeeding on attempt 3 (1 s backoff)."""

    def flaky(step_context: StepContext) -> int:
        if step_context.attempt < 3:
            raise ConnectionError(f"attempt {step_context.attempt} failed")
        return step_context.attempt

    attempt = context.step(flaky, name="flaky", config=StepConfig(retry_strategy=fast_retry(5)))
    return {"succeeded_on_attempt": attempt}


@durable_execution
def step_retry_exhausted(event: dict, context: DurableContext) -> dict:
    """A step that always fails and exhausts three attempts; the StepError is caught."""

    def always(step_context: StepContext) -> None:
        raise TimeoutError(f"still down on attempt {step_context.attempt}")

    try:
        context.step(always, name="always-fails", config=StepConfig(retry_strategy=fast_retry(3)))
    except StepError as err:
        return {"error": describe(err)}
    return {"error": None}


@durable_execution
def step_retry_filtered(event: dict, context: DurableContext) -> dict:
    """retryable_error_types filters: a KeyError is not retried although attempts remain."""

    def wrong_kind(_: StepContext) -> None:
        raise KeyError("missing")

    config = StepConfig(retry_strategy=fast_retry(5, retryable_error_types=[TimeoutError]))
    try:
        context.step(wrong_kind, name="not-retryable", config=config)
    except StepError as err:
        return {"error": describe(err)}
    return {"error": None}


@durable_execution
def step_retry_in_child(event: dict, context: DurableContext) -> dict:
    """A retrying step inside a child context (PENDING/READY ops with a ParentId)."""

    def flaky(step_context: StepContext) -> int:
        if step_context.attempt == 1:
            raise ConnectionError("first attempt fails")
        return step_context.attempt * 100

    def body(child: DurableContext) -> int:
        return child.step(flaky, name="inner-flaky", config=StepConfig(retry_strategy=fast_retry(3)))

    return {"value": context.run_in_child_context(body, name="retry-scope")}


@durable_execution
def step_at_most_once_success(event: dict, context: DurableContext) -> dict:
    """An AT_MOST_ONCE_PER_RETRY step (synchronous START checkpoint) that succeeds."""
    config = StepConfig(step_semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY)
    charged = context.step(lambda _: {"charged": event["amount"]}, name="charge", config=config)
    return charged


class _CrashOnFirstSerialize(SerDes[Any]):
    """JSON serdes whose first serialize per execution raises RetryableSerDesError.

    The step body has already run and START is checkpointed, so the invocation
    dies with the step STARTED: the same state a Lambda crash would leave.
    """

    def __init__(self, key: str) -> None:
        self._key = key

    def serialize(self, value: Any, serdes_context: SerDesContext) -> str:
        if bump_arn(serdes_context.durable_execution_arn, self._key) == 1:
            raise RetryableSerDesError("simulated crash after the step body ran")
        return JsonSerDes().serialize(value, serdes_context)

    def deserialize(self, data: str, serdes_context: SerDesContext) -> Any:
        return JsonSerDes().deserialize(data, serdes_context)


@durable_execution
def step_at_most_once_interrupted_retried(event: dict, context: DurableContext) -> dict:
    """AT_MOST_ONCE step interrupted after START; on re-invocation StepInterruptedError is retried."""
    config = StepConfig(
        retry_strategy=fast_retry(3),
        step_semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY,
        serdes=_CrashOnFirstSerialize("amo-retried"),
    )
    result = context.step(lambda sc: {"attempt": sc.attempt}, name="fragile", config=config)
    return {"result": result}


@durable_execution
def step_at_most_once_interrupted_failed(event: dict, context: DurableContext) -> dict:
    """AT_MOST_ONCE step interrupted after START with no retries: it FAILS with StepInterruptedError."""
    config = StepConfig(
        retry_strategy=RetryPresets.none(),
        step_semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY,
        serdes=_CrashOnFirstSerialize("amo-failed"),
    )
    try:
        context.step(lambda _: "side effect", name="fragile", config=config)
    except StepError as err:
        return {"error": describe(err)}
    return {"error": None}


@durable_execution
def step_custom_subtype(event: dict, context: DurableContext) -> dict:
    """A step with a custom SubType, which must round-trip verbatim on replay."""
    config = StepConfig(sub_type="Payment_v2")
    first = context.step(lambda _: "paid", name="pay", config=config)
    context.wait(Duration.from_seconds(1), name="settle")
    second = context.step(lambda _: "receipt", name="receipt", config=config)
    return {"first": first, "second": second}


@durable_execution
def step_returns_none(event: dict, context: DurableContext) -> dict:
    """A step returning None (payload "null") that is replayed after a wait."""
    value = context.step(lambda _: None, name="nothing")
    context.wait(Duration.from_seconds(1))
    return {"value": value, "is_none": value is None}


@durable_execution
def step_returns_nested(event: dict, context: DurableContext) -> dict:
    """A step returning a nested dict/list structure, replayed after a wait."""
    doc = context.step(
        lambda _: {
            "order": {
                "id": 7,
                "lines": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}],
            },
            "ok": True,
        },
        name="build-doc",
    )
    context.wait(Duration.from_seconds(1))
    return {"lines": len(doc["order"]["lines"]), "doc": doc}


@durable_execution
def step_extended_types(event: dict, context: DurableContext) -> dict:
    """A step returning datetime/Decimal/UUID through ExtendedTypeSerDes, replayed after a wait."""
    value = context.step(
        lambda _: {
            "when": datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC),
            "price": decimal.Decimal("19.99"),
            "ref": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        },
        name="typed",
        config=StepConfig(serdes=ExtendedTypeSerDes()),
    )
    context.wait(Duration.from_seconds(1))
    return {
        "when": value["when"].isoformat(),
        "when_is_datetime": isinstance(value["when"], datetime.datetime),
        "price": str(value["price"]),
        "price_is_decimal": isinstance(value["price"], decimal.Decimal),
        "ref": str(value["ref"]),
    }


@durable_execution
def step_json_serdes(event: dict, context: DurableContext) -> dict:
    """A step with an explicit JsonSerDes (payload written with json.dumps spacing)."""
    value = context.step(
        lambda _: {"a": [1, 2], "b": "x"},
        name="json",
        config=StepConfig(serdes=JsonSerDes()),
    )
    context.wait(Duration.from_seconds(1))
    return value


# --------------------------------------------------------------------------- waits


@durable_execution
def wait_single(event: dict, context: DurableContext) -> str:
    """One named wait."""
    context.wait(Duration.from_seconds(5), name="nap")
    return "awake"


@durable_execution
def wait_sequential(event: dict, context: DurableContext) -> list:
    """Three sequential waits (one unnamed) interleaved with steps."""
    marks = [context.step(lambda _: "start", name="mark-0")]
    context.wait(Duration.from_seconds(1), name="first")
    marks.append(context.step(lambda _: "after-first", name="mark-1"))
    context.wait(Duration.from_seconds(2))
    context.wait(Duration.from_minutes(1), name="third")
    marks.append(context.step(lambda _: "done", name="mark-2"))
    return marks


@durable_execution
def wait_in_child(event: dict, context: DurableContext) -> dict:
    """Waits inside a child context, before and after a step."""

    def body(child: DurableContext) -> str:
        child.wait(Duration.from_seconds(2), name="inner-wait")
        value = child.step(lambda _: "inner", name="inner-step")
        child.wait(Duration.from_seconds(1), name="inner-wait-2")
        return value

    inner = context.run_in_child_context(body, name="waiting-child")
    return {"inner": inner}


# --------------------------------------------------------------------------- invoke


@durable_execution
def target_adder(event: dict, context: DurableContext) -> dict:
    """Durable invoke target: adds two numbers in a step."""
    total = context.step(lambda _: event["a"] + event["b"], name="sum")
    return {"sum": total}


@durable_execution
def target_waiter(event: dict, context: DurableContext) -> str:
    """Durable invoke target that waits before answering (parent must suspend and resume)."""
    context.wait(Duration.from_seconds(3), name="child-wait")
    return context.step(lambda _: f"waited for {event['who']}", name="answer")


@durable_execution
def target_failing(event: dict, context: DurableContext) -> dict:
    """Durable invoke target that fails with a user error after one step."""
    context.step(lambda _: "tried", name="try")
    raise CatalogueError(f"child refused {event['what']}")


def plain_echo(event: Any, context: Any) -> dict:
    """Plain (non-durable) invoke target echoing its event."""
    return {"echo": event, "plain": True}


def plain_failing(event: Any, context: Any) -> dict:
    """Plain (non-durable) invoke target that raises."""
    raise ValueError(f"plain target rejected {event['what']}")


@durable_execution
def invoke_durable(event: dict, context: DurableContext) -> dict:
    """context.invoke of a durable target (a child durable execution)."""
    result = context.invoke("catalogue-adder", {"a": 2, "b": 40}, name="call-adder")
    return {"child": result}


@durable_execution
def invoke_durable_waiting(event: dict, context: DurableContext) -> dict:
    """context.invoke of a durable target that itself waits, then a step in the parent."""
    result = context.invoke("catalogue-waiter", {"who": "parent"}, name="call-waiter")
    tail = context.step(lambda _: "parent-done", name="tail")
    return {"child": result, "tail": tail}


@durable_execution
def invoke_plain(event: dict, context: DurableContext) -> dict:
    """context.invoke of a plain (non-durable) target."""
    result = context.invoke("catalogue-echo", {"x": 1}, name="call-echo")
    return {"child": result}


@durable_execution
def invoke_durable_failing(event: dict, context: DurableContext) -> dict:
    """context.invoke of a durable target that fails: InvokeError carries the child's error."""
    try:
        context.invoke("catalogue-failing", {"what": "the order"}, name="call-failing")
    except InvokeError as err:
        return {"error": describe(err)}
    return {"error": None}


@durable_execution
def invoke_plain_failing(event: dict, context: DurableContext) -> dict:
    """context.invoke of a plain target that raises: InvokeError carries the function error."""
    try:
        context.invoke("catalogue-plain-failing", {"what": "the order"}, name="call-plain-failing")
    except InvokeError as err:
        return {"error": describe(err)}
    return {"error": None}


@durable_execution
def invoke_unknown(event: dict, context: DurableContext) -> dict:
    """context.invoke of an unregistered function name: the op FAILS (message is service-specific)."""
    try:
        context.invoke("catalogue-no-such-function", {}, name="call-missing")
    except InvokeError as err:
        return {"error": describe(err, with_message=False)}
    return {"error": None}


# --------------------------------------------------------------------------- execution level


@durable_execution
def large_result(event: dict, context: DurableContext) -> str:
    """A handler result over 6 MiB: the SDK checkpoints EXECUTION SUCCEED with the payload."""
    unit = context.step(lambda _: "abcdefgh", name="unit")
    return unit * (6 * 1024 * 1024 // len(unit) + 16)


@durable_execution
def handler_raises(event: dict, context: DurableContext) -> dict:
    """An uncaught user exception after a step fails the execution (not retried)."""
    context.step(lambda _: "ok", name="before-raise")
    raise CatalogueError(f"handler gave up on {event['order']}")


@durable_execution
def nondeterministic_name(event: dict, context: DurableContext) -> str:
    """Replay sees a different step name at the same position: NonDeterministicExecutionError."""
    name = "original" if bump(context, "nd-name") == 1 else "renamed"
    context.step(lambda _: 1, name=name)
    context.wait(Duration.from_seconds(1), name="force-replay")
    return "unreachable"


@durable_execution
def nondeterministic_type(event: dict, context: DurableContext) -> str:
    """Replay sees a wait where a step was checkpointed: NonDeterministicExecutionError."""
    if bump(context, "nd-type") == 1:
        context.step(lambda _: 1, name="slot")
    else:
        context.wait(Duration.from_seconds(1), name="slot")
    context.wait(Duration.from_seconds(1), name="force-replay")
    return "unreachable"


@durable_execution
def execution_timeout(event: dict, context: DurableContext) -> str:
    """Waits 30 s under a 2 s execution timeout: the execution TIMES OUT."""
    context.step(lambda _: "started", name="begin")
    context.wait(Duration.from_seconds(30), name="too-long")
    return "unreachable"


@durable_execution
def logger_use(event: dict, context: DurableContext) -> dict:
    """context.logger and StepContext.logger across a replay (logging has no durable effect)."""
    context.logger.info("starting", extra={"order": event["order"]})

    def logged(step_context: StepContext) -> str:
        step_context.logger.info("inside step", extra={"attempt": step_context.attempt})
        return "logged"

    value = context.step(logged, name="logged-step")
    context.wait(Duration.from_seconds(1), name="between-logs")
    context.logger.warning("resumed")
    return {"value": value, "order": event["order"]}


@durable_execution
def replay_input_fields(event: dict, context: DurableContext) -> dict:
    """Input fields are read before and after several replays (waits) and feed steps."""
    customer = event["customer"]
    subtotal = context.step(lambda _: sum(i["price"] * i["qty"] for i in event["items"]), name="subtotal")
    context.wait(Duration.from_seconds(1), name="cool-off")
    tax = context.step(lambda _: round(subtotal * event["tax_rate"], 2), name="tax")
    context.wait(Duration.from_seconds(1), name="cool-off-2")
    return {
        "customer": customer,
        "subtotal": subtotal,
        "tax": tax,
        "items": len(event["items"]),
    }


@durable_execution
def input_none(event: dict | None, context: DurableContext) -> dict:
    """No input payload: the handler gets an empty event (the reference passes None, the SDK {} for "")."""
    seen = context.step(lambda _: sorted((event or {}).keys()), name="keys")
    context.wait(Duration.from_seconds(1), name="replay-empty")
    return {"keys": seen, "empty": not event}
