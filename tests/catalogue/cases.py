"""The differential-conformance cases.

Each Case names a durable handler, its input, the external actions to perform
while it runs, and the invoke targets it needs. ``expected_status`` is what the
reference service (the SDK's testing library) produced: a sanity check only;
the real comparison is reference outcome vs. engine outcome.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.catalogue import handlers as h
from tests.catalogue import handlers_batch as hb
from tests.catalogue import handlers_callbacks as hc


@dataclass(frozen=True)
class CallbackSucceed:
    """Send callback success to the named CALLBACK op with a raw result string."""

    name: str
    result: str


@dataclass(frozen=True)
class CallbackFail:
    """Send callback failure to the named CALLBACK op."""

    name: str
    error_type: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class CallbackHeartbeat:
    """Send a heartbeat to the named CALLBACK op."""

    name: str


@dataclass(frozen=True)
class StopExecution:
    """Stop once the named CALLBACK op is STARTED (and its invocation completed)."""

    when_callback: str


@dataclass(frozen=True)
class PauseExecution:
    """Pause once the named CALLBACK op is STARTED (and its invocation completed)."""

    when_callback: str


@dataclass(frozen=True)
class ResumeExecution:
    """Resume a paused execution."""


Action = CallbackSucceed | CallbackFail | CallbackHeartbeat | StopExecution | PauseExecution | ResumeExecution


@dataclass(frozen=True)
class Case:
    """One catalogue case: a handler, its input and what to do while it runs."""

    # Unique, [a-z0-9-]+; also used as the registered function name.
    name: str
    # The @durable_execution handler.
    handler: Callable[..., Any]
    # JSON text payload.
    input: str | None = None
    # Performed in order; callback actions first wait until the named CALLBACK
    # op is STARTED (and the invocation that created it completed).
    actions: tuple[Action, ...] = ()
    # Function name -> durable handler (for context.invoke).
    durable_targets: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    # Function name -> plain callable(event, context).
    plain_targets: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    # Seconds.
    execution_timeout: int = 60
    # What the reference produced; a sanity check.
    expected_status: str = "SUCCEEDED"
    # Only if a case is too slow with 2-op pages; avoid.
    skip_page_size_2: bool = False


def _json(value: Any) -> str:
    return json.dumps(value)


CASES: tuple[Case, ...] = (
    # ------------------------------------------------------------------ steps
    Case("steps-succeed", h.steps_succeed, input=_json({"a": 2, "b": 3})),
    Case("step-fails-caught", h.step_fails_caught),
    Case("step-fails-uncaught", h.step_fails_uncaught, expected_status="FAILED"),
    Case("step-retry-then-succeed", h.step_retry_then_succeed),
    Case("step-retry-exhausted", h.step_retry_exhausted),
    Case("step-retry-filtered", h.step_retry_filtered),
    Case("step-retry-in-child", h.step_retry_in_child),
    Case(
        "step-at-most-once-success",
        h.step_at_most_once_success,
        input=_json({"amount": 25}),
    ),
    Case("step-at-most-once-interrupted-retried", h.step_at_most_once_interrupted_retried),
    Case("step-at-most-once-interrupted-failed", h.step_at_most_once_interrupted_failed),
    Case("step-custom-subtype", h.step_custom_subtype),
    Case("step-returns-none", h.step_returns_none),
    Case("step-returns-nested", h.step_returns_nested),
    Case("step-extended-types", h.step_extended_types),
    Case("step-json-serdes", h.step_json_serdes),
    # ------------------------------------------------------------------ waits
    Case("wait-single", h.wait_single),
    # 63 s of waits: the engine honours simulated time, so the timeout must exceed them.
    Case("wait-sequential", h.wait_sequential, execution_timeout=300),
    Case("wait-in-child", h.wait_in_child),
    # ------------------------------------------------------------------ callbacks
    Case(
        "callback-success",
        hc.callback_success,
        input=_json({"approver": "dana"}),
        actions=(CallbackSucceed("approval", '{"approved": true}'),),
    ),
    # An empty Result is no result: callback.result() is None, not "".
    Case(
        "callback-success-empty-result",
        hc.callback_success,
        input=_json({"approver": "dana"}),
        actions=(CallbackSucceed("approval", ""),),
    ),
    Case(
        "callback-failure",
        hc.callback_failure,
        actions=(CallbackFail("approval", "Rejected", "manager said no"),),
    ),
    Case(
        "callback-failure-no-error-fields",
        hc.callback_failure,
        actions=(CallbackFail("approval"),),
    ),
    Case(
        "callback-failure-uncaught",
        hc.callback_failure_uncaught,
        actions=(CallbackFail("approval", "Rejected", "manager said no"),),
        expected_status="FAILED",
    ),
    Case("callback-timeout", hc.callback_timeout),
    Case("callback-heartbeat-timeout", hc.callback_heartbeat_timeout),
    Case(
        "callback-heartbeat-then-success",
        hc.callback_heartbeat_then_success,
        actions=(
            CallbackHeartbeat("worker"),
            CallbackHeartbeat("worker"),
            CallbackSucceed("worker", '"finished"'),
        ),
    ),
    Case(
        "callback-two-out-of-order",
        hc.callback_two_out_of_order,
        actions=(CallbackSucceed("second", "two"), CallbackSucceed("first", "one")),
    ),
    Case(
        "callback-json-subtype",
        hc.callback_json_subtype,
        actions=(CallbackSucceed("typed", '{"approved": true, "by": "ops"}'),),
    ),
    Case(
        "callback-in-child",
        hc.callback_in_child,
        actions=(CallbackSucceed("inner-approval", "yes"),),
    ),
    # ------------------------------------------------------------------ wait_for_callback
    Case(
        "wait-for-callback-success",
        hc.wait_for_callback_success,
        actions=(CallbackSucceed("partner create callback id", '{"status": "shipped"}'),),
    ),
    Case(
        "wait-for-callback-failure",
        hc.wait_for_callback_failure,
        actions=(CallbackFail("partner create callback id", "PartnerError", "out of stock"),),
    ),
    Case("wait-for-callback-submitter-fails", hc.wait_for_callback_submitter_fails),
    Case("wait-for-callback-timeout", hc.wait_for_callback_timeout),
    # ------------------------------------------------------------------ invoke
    Case(
        "invoke-durable",
        h.invoke_durable,
        durable_targets={"catalogue-adder": h.target_adder},
    ),
    Case(
        "invoke-durable-waiting",
        h.invoke_durable_waiting,
        durable_targets={"catalogue-waiter": h.target_waiter},
    ),
    Case("invoke-plain", h.invoke_plain, plain_targets={"catalogue-echo": h.plain_echo}),
    Case(
        "invoke-durable-failing",
        h.invoke_durable_failing,
        durable_targets={"catalogue-failing": h.target_failing},
    ),
    Case(
        "invoke-plain-failing",
        h.invoke_plain_failing,
        plain_targets={"catalogue-plain-failing": h.plain_failing},
    ),
    Case("invoke-unknown-target", h.invoke_unknown),
    # ------------------------------------------------------------------ parallel
    Case("parallel-all-succeed", hb.parallel_all_succeed),
    Case("parallel-tolerated-failures", hb.parallel_tolerated_failures),
    Case("parallel-failure-exceeded", hb.parallel_failure_exceeded),
    Case("parallel-min-successful", hb.parallel_min_successful),
    Case("parallel-named-branches", hb.parallel_named_branches),
    Case("parallel-with-waits", hb.parallel_with_waits),
    Case("parallel-flat", hb.parallel_flat),
    # ------------------------------------------------------------------ map
    Case(
        "map-max-concurrency",
        hb.map_max_concurrency,
        input=_json({"items": [1, 2, 3, 4, 5]}),
    ),
    Case("map-min-successful", hb.map_min_successful),
    Case("map-tolerated-failure-count", hb.map_tolerated_failure_count),
    Case("map-tolerated-failure-percentage", hb.map_tolerated_failure_percentage),
    Case(
        "map-tolerated-failure-percentage-exceeded",
        hb.map_tolerated_failure_percentage_exceeded,
    ),
    Case("map-should-complete", hb.map_should_complete),
    Case("map-should-complete-failed", hb.map_should_complete_failed),
    Case("map-item-namer", hb.map_item_namer),
    Case("map-flat", hb.map_flat),
    Case("map-in-parallel", hb.map_in_parallel),
    Case("map-with-waits", hb.map_with_waits),
    # ------------------------------------------------------------------ wait_for_condition
    Case("wait-for-condition-succeeds", hb.wait_for_condition_succeeds),
    Case("wait-for-condition-exhausted", hb.wait_for_condition_exhausted),
    # ------------------------------------------------------------------ child contexts
    Case("child-plain", hb.child_plain),
    Case("child-failing", hb.child_failing),
    Case("child-nested", hb.child_nested),
    Case("child-large-result", hb.child_large_result),
    Case("child-custom-subtype", hb.child_custom_subtype),
    Case("child-virtual", hb.child_virtual),
    # ------------------------------------------------------------------ with_retry
    Case("with-retry-once", hb.with_retry_once),
    # ------------------------------------------------------------------ execution level
    Case("large-result", h.large_result),
    Case(
        "handler-raises",
        h.handler_raises,
        input=_json({"order": "o-17"}),
        expected_status="FAILED",
    ),
    Case("nondeterministic-name", h.nondeterministic_name, expected_status="FAILED"),
    Case("nondeterministic-type", h.nondeterministic_type, expected_status="FAILED"),
    Case(
        "execution-timeout",
        h.execution_timeout,
        execution_timeout=2,
        expected_status="TIMED_OUT",
    ),
    Case(
        "stop-while-callback-pending",
        hc.stop_while_callback_pending,
        actions=(StopExecution("never-answered"),),
        expected_status="STOPPED",
    ),
    Case(
        "pause-resume-callback",
        hc.pause_resume_callback,
        actions=(
            PauseExecution("held"),
            CallbackSucceed("held", "go"),
            ResumeExecution(),
        ),
    ),
    Case("logger-use", h.logger_use, input=_json({"order": "o-9"})),
    Case(
        "replay-input-fields",
        h.replay_input_fields,
        input=_json(
            {
                "customer": "c-42",
                "tax_rate": 0.2,
                "items": [{"price": 10, "qty": 2}, {"price": 5, "qty": 3}],
            }
        ),
    ),
    Case("input-none", h.input_none),
)

CASES_BY_NAME: dict[str, Case] = {case.name: case for case in CASES}
assert len(CASES_BY_NAME) == len(CASES), "case names must be unique"
