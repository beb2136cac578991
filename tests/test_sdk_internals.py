"""The SDK's private names the engine tunes still exist in the installed SDK."""

from __future__ import annotations

from importlib import import_module

import pytest
from django.test import override_settings

from executions.workers import sdk_internals


def test_every_tuned_name_exists_in_the_installed_sdk() -> None:
    sdk_internals.check()  # raises SdkInternalsMoved, naming what moved, after an SDK upgrade


def test_apply_sets_each_tuning_from_its_setting() -> None:
    tuning = sdk_internals.TUNINGS[0]
    module = import_module(tuning.module)
    before = getattr(module, tuning.name)
    try:
        with override_settings(**{tuning.setting: 0.0123}):
            sdk_internals.apply()
        assert getattr(module, tuning.name) == 0.0123
    finally:
        setattr(module, tuning.name, before)


def test_a_missing_name_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = sdk_internals.Tuning(
        module="aws_durable_execution_sdk_python.state", name="_NO_SUCH", setting="X", why=""
    )
    monkeypatch.setattr(sdk_internals, "TUNINGS", (gone,))
    with pytest.raises(sdk_internals.SdkInternalsMoved, match="_NO_SUCH"):
        sdk_internals.apply()


def test_the_batching_wait_is_skipped_only_when_no_branch_can_join() -> None:
    from aws_durable_execution_sdk_python.state import ExecutionState

    sdk_internals.apply()
    sdk_internals.apply()  # applying twice wraps once
    read_timeout = ExecutionState._read_timeout
    assert read_timeout.skips_lone_caller_wait  # type: ignore[attr-defined]
    assert not getattr(read_timeout.__wrapped__, "skips_lone_caller_wait", False)  # type: ignore[attr-defined]

    class Batch:
        has_blocked_caller = True

    class State:
        _branch_pools: list[object] = []

        def _seconds_until_next_refresh(self, now: float) -> None:
            return None

    lone = State()
    assert read_timeout(lone, Batch(), 0.0, 10.0) == 0.0
    with_branches = State()
    with_branches._branch_pools = [object()]
    assert read_timeout(with_branches, Batch(), 0.0, 10.0) > 0.0  # siblings may still come
    Batch.has_blocked_caller = False
    assert read_timeout(lone, Batch(), 0.0, 10.0) > 0.0  # nobody blocked: keep collecting
