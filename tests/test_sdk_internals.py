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
