"""Differential conformance: every catalogue case on this engine and on the SDK's reference runner.

Status, result, error type and the operation tree (type, subtype, name,
status, parent) must match. The whole catalogue runs twice: with normal state
pages and with pages forced down to 2 operations.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from django.test import override_settings

from executions import services
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
from tests.catalogue.reference import run_reference
from tests.engine_driver import (
    EngineDriver,
    callback_id,
    engine_driver,
    refreshed,
    register,
    start,
    started_callback,
    wire_operations,
)

pytestmark = pytest.mark.django_db(transaction=True)


@functools.cache
def reference_outcome(case_name: str) -> Outcome:
    case = next(c for c in CASES if c.name == case_name)
    return run_reference(case)


def run_on_engine(case: Case) -> Outcome:
    for name, target in case.durable_targets.items():
        register(name, target)
    for name, target in case.plain_targets.items():
        register(name, target, durable=False)
    register(case.name, case.handler, timeout=case.execution_timeout)
    with engine_driver() as driver:
        execution = start(case.name, case.input)
        for action in case.actions:
            _perform(driver, execution, action)
        driver.run_until(lambda: refreshed(execution).is_terminal)
        execution = refreshed(execution)
    return Outcome(
        status=execution.status,
        result=execution.result,
        error_type=(execution.error or {}).get("ErrorType"),
        operations=normalize_operations(wire_operations(execution)),
    )


def _perform(driver: EngineDriver, execution: Any, action: Any) -> None:
    if isinstance(action, ResumeExecution):
        driver.settle()
        services.execution_resume(execution.arn)
        return
    name = action.when_callback if isinstance(action, (StopExecution, PauseExecution)) else action.name
    driver.run_until(lambda: started_callback(execution, name) is not None)
    op = started_callback(execution, name)
    assert op is not None
    if isinstance(action, CallbackSucceed):
        services.callback_succeed(callback_id(op), action.result)
    elif isinstance(action, CallbackFail):
        error = {
            key: value
            for key, value in (("ErrorType", action.error_type), ("ErrorMessage", action.error_message))
            if value is not None
        }
        services.callback_fail(callback_id(op), error or None)
    elif isinstance(action, CallbackHeartbeat):
        services.callback_heartbeat(callback_id(op))
    elif isinstance(action, StopExecution):
        services.execution_stop(execution.arn)
    elif isinstance(action, PauseExecution):
        services.execution_pause(execution.arn)


def assert_same_outcome(case: Case, mine: Outcome, reference: Outcome) -> None:
    assert mine.status == case.expected_status, f"engine ended {mine.status}"
    assert (mine.status, mine.result, mine.error_type) == (
        reference.status,
        reference.result,
        reference.error_type,
    )
    assert mine.operations == reference.operations


CASE_IDS = [case.name for case in CASES]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_case_matches_reference(case: Case) -> None:
    assert_same_outcome(case, run_on_engine(case), reference_outcome(case.name))


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if not c.skip_page_size_2],
    ids=[c.name for c in CASES if not c.skip_page_size_2],
)
def test_case_matches_reference_with_two_operation_pages(case: Case) -> None:
    with override_settings(DURABLE_STATE_PAGE_SIZE=2):
        mine = run_on_engine(case)
    assert_same_outcome(case, mine, reference_outcome(case.name))


def test_catalogue_is_large_enough() -> None:
    assert len(CASES) >= 40
