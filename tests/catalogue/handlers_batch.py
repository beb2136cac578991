"""Catalogue handlers: parallel, map, child contexts, with_retry and wait_for_condition.

Batches whose operation set depends on which branch finishes first (early
completion) use ``max_concurrency=1`` so the set of started items is
deterministic.
"""

from __future__ import annotations

from typing import Any

from aws_durable_execution_sdk_python import (
    ChildContextError,
    CompletionOutcome,
    DurableContext,
    ParallelBranch,
    WaitForConditionError,
    WithRetryConfig,
    complete_batch,
    continue_batch,
    durable_execution,
    durable_parallel_branch,
    with_retry,
)
from aws_durable_execution_sdk_python.config import (
    ChildConfig,
    CompletionConfig,
    CompletionStatus,
    Duration,
    JitterStrategy,
    MapConfig,
    NestingType,
    ParallelConfig,
    StepConfig,
)
from aws_durable_execution_sdk_python.retries import RetryPresets
from aws_durable_execution_sdk_python.waits import (
    WaitForConditionConfig,
    WaitStrategyConfig,
    create_wait_strategy,
)

from tests.catalogue._support import (
    CatalogueError,
    batch_summary,
    describe,
    fast_retry,
)

NO_RETRY = StepConfig(retry_strategy=RetryPresets.none())


def _double(ctx: DurableContext, item: int, index: int, items: Any) -> int:
    """Map item body: one step doubling the item."""
    return ctx.step(lambda _: item * 2, name=f"double-{item}")


def _double_or_fail_odd(ctx: DurableContext, item: int, index: int, items: Any) -> int:
    """Map item body: fails (no retry) for odd items."""

    def work(_: Any) -> int:
        if item % 2:
            raise CatalogueError(f"odd item {item}")
        return item * 2

    return ctx.step(work, name=f"work-{item}", config=NO_RETRY)


# --------------------------------------------------------------------------- parallel


@durable_execution
def parallel_all_succeed(event: dict, context: DurableContext) -> dict:
    """parallel with three branches that all succeed."""
    branches = [
        lambda ctx: ctx.step(lambda _: "a", name="step-a"),
        lambda ctx: ctx.step(lambda _: "b", name="step-b"),
        lambda ctx: ctx.step(lambda _: "c", name="step-c"),
    ]
    return batch_summary(context.parallel(branches, name="fan-out"))


def _branch_fails(ctx: DurableContext) -> str:
    """Parallel branch that fails in a no-retry step."""

    def boom(_: Any) -> str:
        raise CatalogueError("branch failed")

    return ctx.step(boom, name="boom", config=NO_RETRY)


@durable_execution
def parallel_tolerated_failures(event: dict, context: DurableContext) -> dict:
    """parallel where 1 of 4 branches fails, within tolerated_failure_count=1."""
    branches = [
        lambda ctx: ctx.step(lambda _: 1, name="ok-1"),
        _branch_fails,
        lambda ctx: ctx.step(lambda _: 3, name="ok-3"),
        lambda ctx: ctx.step(lambda _: 4, name="ok-4"),
    ]
    config = ParallelConfig(completion_config=CompletionConfig(tolerated_failure_count=1))
    return batch_summary(context.parallel(branches, name="tolerant", config=config))


@durable_execution
def parallel_failure_exceeded(event: dict, context: DurableContext) -> dict:
    """parallel with default completion (fail fast) and max_concurrency=1: stops after the first failure."""
    branches = [
        lambda ctx: ctx.step(lambda _: 1, name="ok-1"),
        _branch_fails,
        lambda ctx: ctx.step(lambda _: 3, name="never-3"),
    ]
    config = ParallelConfig(max_concurrency=1)
    result = context.parallel(branches, name="fail-fast", config=config)
    summary = batch_summary(result)
    try:
        result.throw_if_error()
    except ChildContextError as err:
        summary["thrown"] = describe(err)
    return summary


@durable_execution
def parallel_min_successful(event: dict, context: DurableContext) -> dict:
    """parallel with min_successful=2 of 4 (max_concurrency=1): completes early."""
    branches = [lambda ctx, i=i: ctx.step(lambda _: i, name=f"branch-step-{i}") for i in range(4)]
    config = ParallelConfig(max_concurrency=1, completion_config=CompletionConfig(min_successful=2))
    return batch_summary(context.parallel(branches, name="quorum", config=config))


@durable_parallel_branch(name="decorated-branch")
def _decorated_branch(ctx: DurableContext, label: str) -> str:
    """A branch built with durable_parallel_branch."""
    return ctx.step(lambda _: f"decorated {label}", name="decorated-step")


@durable_execution
def parallel_named_branches(event: dict, context: DurableContext) -> dict:
    """parallel with ParallelBranch names and a durable_parallel_branch, plus one unnamed branch."""
    branches = [
        ParallelBranch(
            func=lambda ctx: ctx.step(lambda _: "u", name="user-step"),
            name="fetch-user",
        ),
        ParallelBranch(
            func=lambda ctx: ctx.step(lambda _: "o", name="order-step"),
            name="fetch-orders",
        ),
        _decorated_branch("x"),
        lambda ctx: ctx.step(lambda _: "anon", name="anon-step"),
    ]
    return batch_summary(context.parallel(branches, name="named"))


@durable_execution
def parallel_with_waits(event: dict, context: DurableContext) -> dict:
    """parallel branches with different waits (the coordinator resumes at each wake-up)."""

    def slow(ctx: DurableContext) -> str:
        ctx.wait(Duration.from_seconds(3), name="slow-wait")
        return ctx.step(lambda _: "slow", name="slow-step")

    def quick(ctx: DurableContext) -> str:
        ctx.wait(Duration.from_seconds(1), name="quick-wait")
        return ctx.step(lambda _: "quick", name="quick-step")

    def immediate(ctx: DurableContext) -> str:
        return ctx.step(lambda _: "now", name="now-step")

    return batch_summary(context.parallel([slow, quick, immediate], name="staggered"))


@durable_execution
def parallel_flat(event: dict, context: DurableContext) -> dict:
    """parallel with NestingType.FLAT: no branch CONTEXT ops, steps parented to the Parallel op."""
    branches = [
        lambda ctx: ctx.step(lambda _: "f1", name="flat-1"),
        lambda ctx: ctx.step(lambda _: "f2", name="flat-2"),
    ]
    config = ParallelConfig(nesting_type=NestingType.FLAT)
    return batch_summary(context.parallel(branches, name="flat", config=config))


# --------------------------------------------------------------------------- map


@durable_execution
def map_max_concurrency(event: dict, context: DurableContext) -> dict:
    """map over input items with max_concurrency=2; every item succeeds."""
    config = MapConfig(max_concurrency=2)
    return batch_summary(context.map(event["items"], _double, name="doubler", config=config))


@durable_execution
def map_min_successful(event: dict, context: DurableContext) -> dict:
    """map with CompletionConfig(min_successful=2) over 5 items, max_concurrency=1."""
    config = MapConfig(max_concurrency=1, completion_config=CompletionConfig(min_successful=2))
    return batch_summary(context.map([1, 2, 3, 4, 5], _double, name="first-two", config=config))


@durable_execution
def map_tolerated_failure_count(event: dict, context: DurableContext) -> dict:
    """map with tolerated_failure_count=1: the second failure (item 3) ends the batch."""
    config = MapConfig(max_concurrency=1, completion_config=CompletionConfig(tolerated_failure_count=1))
    return batch_summary(
        context.map([1, 2, 3, 4, 6], _double_or_fail_odd, name="count-tolerant", config=config)
    )


@durable_execution
def map_tolerated_failure_percentage(event: dict, context: DurableContext) -> dict:
    """map with tolerated_failure_percentage=50: 1 failure of 4 is tolerated, all items run."""
    config = MapConfig(
        max_concurrency=1,
        completion_config=CompletionConfig(tolerated_failure_percentage=50),
    )
    return batch_summary(context.map([2, 3, 4, 6], _double_or_fail_odd, name="pct-tolerant", config=config))


@durable_execution
def map_tolerated_failure_percentage_exceeded(event: dict, context: DurableContext) -> dict:
    """map with tolerated_failure_percentage=25: a second failure of 4 exceeds it."""
    config = MapConfig(
        max_concurrency=1,
        completion_config=CompletionConfig(tolerated_failure_percentage=25),
    )
    return batch_summary(context.map([1, 2, 3, 4], _double_or_fail_odd, name="pct-exceeded", config=config))


def _two_successes(status: CompletionStatus) -> Any:
    """should_complete predicate: complete (SUCCEEDED) after two successes."""
    return complete_batch() if status.success_count >= 2 else continue_batch()


def _any_failure(status: CompletionStatus) -> Any:
    """should_complete predicate: complete as FAILED on the first failure."""
    return complete_batch(CompletionOutcome.FAILED) if status.failure_count >= 1 else continue_batch()


@durable_execution
def map_should_complete(event: dict, context: DurableContext) -> dict:
    """map with a should_complete predicate that completes after two successes."""
    config = MapConfig(
        max_concurrency=1,
        completion_config=CompletionConfig(should_complete=_two_successes),
    )
    return batch_summary(context.map([10, 20, 30, 40], _double, name="predicate", config=config))


@durable_execution
def map_should_complete_failed(event: dict, context: DurableContext) -> dict:
    """map with a should_complete predicate completing as FAILED; throw_if_error is caught."""
    config = MapConfig(
        max_concurrency=1,
        completion_config=CompletionConfig(should_complete=_any_failure),
    )
    result = context.map([2, 5, 4], _double_or_fail_odd, name="predicate-fail", config=config)
    summary = batch_summary(result)
    try:
        result.throw_if_error()
    except ChildContextError as err:
        summary["thrown"] = describe(err)
    return summary


@durable_execution
def map_item_namer(event: dict, context: DurableContext) -> dict:
    """map with an item_namer deriving each iteration's name from the item."""
    items = [{"sku": "apple", "qty": 3}, {"sku": "pear", "qty": 1}]

    def line_total(ctx: DurableContext, item: dict, index: int, all_items: Any) -> int:
        return ctx.step(lambda _: item["qty"] * 5, name="price")

    config = MapConfig(item_namer=lambda item, index: f"line-{item['sku']}-{index}")
    return batch_summary(context.map(items, line_total, name="lines", config=config))


@durable_execution
def map_flat(event: dict, context: DurableContext) -> dict:
    """map with NestingType.FLAT: no MapIteration CONTEXT ops."""
    config = MapConfig(nesting_type=NestingType.FLAT)
    return batch_summary(context.map([1, 2, 3], _double, name="flat-map", config=config))


@durable_execution
def map_in_parallel(event: dict, context: DurableContext) -> dict:
    """A map nested inside a parallel branch, beside a plain branch."""

    def mapping_branch(ctx: DurableContext) -> list:
        return ctx.map([1, 2, 3], _double, name="inner-map").get_results()

    def plain_branch(ctx: DurableContext) -> str:
        return ctx.step(lambda _: "side", name="side-step")

    return batch_summary(context.parallel([mapping_branch, plain_branch], name="outer"))


@durable_execution
def map_with_waits(event: dict, context: DurableContext) -> dict:
    """map items that each wait (different durations) before a step."""

    def body(ctx: DurableContext, item: int, index: int, items: Any) -> str:
        ctx.wait(Duration.from_seconds(item), name=f"wait-{item}")
        return ctx.step(lambda _: f"item-{item}", name=f"after-wait-{item}")

    return batch_summary(
        context.map([3, 1, 2], body, name="waiting-map", config=MapConfig(max_concurrency=3))
    )


# --------------------------------------------------------------------------- wait_for_condition


def _poll_strategy(max_attempts: int, stop_at: int | None):
    """Deterministic wait strategy: 1 s between polls; stop once count >= stop_at."""
    return create_wait_strategy(
        WaitStrategyConfig(
            should_continue_polling=lambda state: stop_at is None or state["count"] < stop_at,
            max_attempts=max_attempts,
            initial_delay=Duration.from_seconds(1),
            max_delay=Duration.from_seconds(1),
            backoff_rate=1,
            jitter_strategy=JitterStrategy.NONE,
        )
    )


def _increment(state: dict, ctx: Any) -> dict:
    """wait_for_condition check: bump the counter and remember the attempt."""
    return {"count": state["count"] + 1, "attempt": ctx.attempt}


@durable_execution
def wait_for_condition_succeeds(event: dict, context: DurableContext) -> dict:
    """wait_for_condition polls three times (RETRY with state) and then succeeds."""
    config = WaitForConditionConfig(
        wait_strategy=_poll_strategy(10, 3), initial_state={"count": 0, "attempt": 0}
    )
    final = context.wait_for_condition(_increment, config=config, name="poll-job")
    return {"final": final}


@durable_execution
def wait_for_condition_exhausted(event: dict, context: DurableContext) -> dict:
    """wait_for_condition that never succeeds within max_attempts=3: WaitForConditionError."""
    config = WaitForConditionConfig(
        wait_strategy=_poll_strategy(3, None), initial_state={"count": 0, "attempt": 0}
    )
    try:
        context.wait_for_condition(_increment, config=config, name="poll-forever")
    except WaitForConditionError as err:
        return {"error": describe(err)}
    return {"error": None}


# --------------------------------------------------------------------------- child contexts


@durable_execution
def child_plain(event: dict, context: DurableContext) -> dict:
    """run_in_child_context grouping two steps; replayed from its checkpointed result."""

    def body(child: DurableContext) -> int:
        a = child.step(lambda _: 5, name="five")
        return child.step(lambda _: a * 2, name="ten")

    value = context.run_in_child_context(body, name="group")
    context.wait(Duration.from_seconds(1), name="after-group")
    return {"value": value}


@durable_execution
def child_failing(event: dict, context: DurableContext) -> dict:
    """A child context whose body raises: ChildContextError with the inner error type."""

    def body(child: DurableContext) -> None:
        child.step(lambda _: "partial", name="partial-work")
        raise CatalogueError("child body failed")

    try:
        context.run_in_child_context(body, name="doomed")
    except ChildContextError as err:
        return {"error": describe(err)}
    return {"error": None}


@durable_execution
def child_nested(event: dict, context: DurableContext) -> dict:
    """Three levels of nested child contexts, with a wait at the deepest level."""

    def level3(ctx: DurableContext) -> str:
        ctx.wait(Duration.from_seconds(1), name="deep-wait")
        return ctx.step(lambda _: "deep", name="deep-step")

    def level2(ctx: DurableContext) -> str:
        return ctx.step(lambda _: "mid-", name="mid-step") + ctx.run_in_child_context(level3, name="level-3")

    def level1(ctx: DurableContext) -> str:
        return ctx.run_in_child_context(level2, name="level-2") + "!"

    return {"value": context.run_in_child_context(level1, name="level-1")}


@durable_execution
def child_large_result(event: dict, context: DurableContext) -> dict:
    """A child context result over 256 KB: SUCCEED with ReplayChildren, body re-run on replay."""

    def body(child: DurableContext) -> str:
        parts = [child.step(lambda _, i=i: chr(ord("a") + i) * 100_000, name=f"chunk-{i}") for i in range(3)]
        return "".join(parts)

    big = context.run_in_child_context(body, name="big-child")
    context.wait(Duration.from_seconds(1), name="after-big")
    return {"length": len(big), "head": big[:3], "tail": big[-3:]}


@durable_execution
def child_custom_subtype(event: dict, context: DurableContext) -> dict:
    """run_in_child_context with a custom SubType."""
    value = context.run_in_child_context(
        lambda child: child.step(lambda _: "saga-step", name="saga-work"),
        name="saga",
        config=ChildConfig(sub_type="Saga"),
    )
    context.wait(Duration.from_seconds(1), name="after-saga")
    return {"value": value}


@durable_execution
def child_virtual(event: dict, context: DurableContext) -> dict:
    """A virtual child context (is_virtual=True): its ops are written under the caller's context."""

    def body(child: DurableContext) -> str:
        child.wait(Duration.from_seconds(1), name="virtual-wait")
        return child.step(lambda _: "virtual", name="virtual-step")

    outer = context.run_in_child_context(
        lambda ctx: ctx.run_in_child_context(body, name="virtual", config=ChildConfig(is_virtual=True)),
        name="real-parent",
    )
    return {"value": outer}


# --------------------------------------------------------------------------- with_retry


@durable_execution
def with_retry_once(event: dict, context: DurableContext) -> dict:
    """with_retry whose block fails on attempt 1 and succeeds on attempt 2 (backoff wait between)."""

    def block(ctx: DurableContext, attempt: int) -> dict:
        def work(_: Any) -> str:
            if attempt == 1:
                raise CatalogueError("first attempt of the block fails")
            return f"ok on {attempt}"

        value = ctx.step(work, name=f"block-step-{attempt}", config=NO_RETRY)
        return {"attempt": attempt, "value": value}

    config = WithRetryConfig(retry_strategy=fast_retry(3))
    return with_retry(context, block, config, name="flaky-block")
