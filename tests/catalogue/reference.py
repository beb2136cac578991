"""Run catalogue cases on the SDK's in-memory reference service (DurableFunctionTestRunner).

``run_reference(case)`` returns the normalised Outcome. ``python -m
tests.catalogue.reference`` (from the repo root) runs every case, prints one
line per case and exits non-zero if any status differs from expected_status.

Runner notes (testing library 1.4.0), found while building the catalogue:

* skip_time=True (SkipClock) only skips *durable* timers (waits, step retries,
  wait_for_condition polls), which are armed through the clock. Callback
  timeouts, heartbeat timeouts, the execution timeout and the backend's
  invocation-retry backoff are plain ``Scheduler.call_later(delay=...)`` calls
  and take real seconds. Catalogue callback timeouts are therefore 1 s.
* Under skip_time a 30 s wait ends at once while the 2 s execution timeout is
  real time, so the execution-timeout case would SUCCEED. Cases in
  REAL_TIME_CASES run with skip_time=False.
* A handler that raises (e.g. RetryableSerDesError, used to interrupt an
  AT_MOST_ONCE step) is re-invoked after ``Executor.RETRY_BACKOFF_SECONDS``
  (5 real seconds). We shadow it on the runner's executor instance with a
  short delay; it does not change any outcome.
* The runner has no stop method. ``Executor.stop_execution`` (the service's
  StopDurableExecution) is reachable as ``runner._executor`` and is used for
  StopExecution actions.
* ``runner.wait_for_callback(arn, name)`` returns a callback id only once the
  CALLBACK op is STARTED *and* the invocation that created it completed,
  which is exactly the precondition our actions are specified with.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from typing import Any

from aws_durable_execution_sdk_python.lambda_service import ErrorObject
from aws_durable_execution_sdk_python_testing.runner import DurableFunctionTestRunner

from tests.catalogue.cases import (
    CASES,
    CallbackFail,
    CallbackHeartbeat,
    CallbackSucceed,
    Case,
    PauseExecution,
    ResumeExecution,
    StopExecution,
)
from tests.catalogue.normalize import Outcome, normalize_operations

# Cases whose timers must be real because they race a real-time timer.
REAL_TIME_CASES: frozenset[str] = frozenset({"execution-timeout"})

CALLBACK_WAIT_SECONDS = 30
RESULT_MARGIN_SECONDS = 30


def _wire(op: Any) -> dict[str, Any]:
    """The identity fields of a reference Operation in wire (JSON) shape."""
    return {
        "Id": op.operation_id,
        "ParentId": op.parent_id,
        "Type": op.operation_type.value,
        "SubType": op.sub_type,
        "Name": op.name,
        "Status": op.status.value,
    }


def _perform(runner: DurableFunctionTestRunner, arn: str, action: Any) -> None:
    match action:
        case CallbackSucceed(name=name, result=result):
            callback_id = runner.wait_for_callback(arn, name=name, timeout=CALLBACK_WAIT_SECONDS)
            runner.send_callback_success(callback_id, result.encode("utf-8"))
        case CallbackFail(name=name, error_type=error_type, error_message=error_message):
            callback_id = runner.wait_for_callback(arn, name=name, timeout=CALLBACK_WAIT_SECONDS)
            error = ErrorObject(message=error_message, type=error_type, data=None, stack_trace=None)
            runner.send_callback_failure(callback_id, error)
        case CallbackHeartbeat(name=name):
            callback_id = runner.wait_for_callback(arn, name=name, timeout=CALLBACK_WAIT_SECONDS)
            runner.send_callback_heartbeat(callback_id)
        case StopExecution(when_callback=name):
            runner.wait_for_callback(arn, name=name, timeout=CALLBACK_WAIT_SECONDS)
            # The runner exposes no stop; use the executor (StopDurableExecution).
            runner._executor.stop_execution(arn)
        case PauseExecution(when_callback=name):
            runner.wait_for_callback(arn, name=name, timeout=CALLBACK_WAIT_SECONDS)
            runner.pause_execution(arn, timeout=CALLBACK_WAIT_SECONDS)
        case ResumeExecution():
            runner.resume_execution(arn)
        case _:
            raise TypeError(f"unknown action {action!r}")


def run_reference(case: Case) -> Outcome:
    """Run ``case`` on DurableFunctionTestRunner and return its normalised Outcome."""
    skip_time = case.name not in REAL_TIME_CASES
    with DurableFunctionTestRunner(
        handler=case.handler,
        poll_interval=0.01,
        execution_timeout=case.execution_timeout,
        skip_time=skip_time,
    ) as runner:
        # Shorten the 5 s real-time re-invocation backoff (see module docstring).
        runner._executor.RETRY_BACKOFF_SECONDS = 0.05
        for function_name, target in case.durable_targets.items():
            runner.register_durable_function(function_name, target)
        for function_name, target in case.plain_targets.items():
            runner.register_function(function_name, target)

        arn = runner.run_async(
            input=case.input,
            execution_timeout=case.execution_timeout,
            function_name=case.name,
            execution_name=f"{case.name}-{uuid.uuid4().hex[:12]}",
        )
        for action in case.actions:
            _perform(runner, arn, action)

        completed = runner._executor.wait_until_complete(arn, case.execution_timeout + RESULT_MARGIN_SECONDS)
        if not completed:
            raise TimeoutError(f"{case.name}: reference execution did not complete")
        # Read the store directly: the full op list, also for STOPPED runs.
        execution = runner._store.load(arn)

    close_status = execution.close_status
    output = execution.result
    return Outcome(
        status=close_status.value if close_status else "RUNNING",
        result=output.result if output else None,
        error_type=output.error.type if output and output.error else None,
        operations=normalize_operations(_wire(op) for op in execution.operations),
    )


def main(argv: list[str]) -> int:
    """Run every case (or the named ones) and report status, op count and timing."""
    # The SDK logs every expected failure with a traceback; keep the report readable.
    logging.disable(logging.CRITICAL)
    selected = [c for c in CASES if not argv or c.name in argv]
    mismatches: list[str] = []
    started = time.monotonic()
    for case in selected:
        t0 = time.monotonic()
        try:
            outcome = run_reference(case)
            status = outcome.status
            detail = f"ops={len(outcome.operations):3d} error_type={outcome.error_type}"
        except Exception as err:
            status = f"ERROR({type(err).__name__}: {err})"
            detail = ""
        ok = status == case.expected_status
        if not ok:
            mismatches.append(case.name)
        flag = "ok " if ok else "BAD"
        print(
            f"{flag} {case.name:45s} {status:10s} {detail} {time.monotonic() - t0:6.2f}s",
            flush=True,
        )
    total = time.monotonic() - started
    print(f"{len(selected)} cases, {len(mismatches)} unexpected status, {total:.1f}s total")
    if mismatches:
        print("unexpected:", ", ".join(mismatches))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
