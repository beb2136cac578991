"""Operator switches for the demo's fault injection."""

from __future__ import annotations

from examples.models import FaultSwitch


def fault_switch_set(point: str, *, disabled: bool) -> FaultSwitch:
    switch, _ = FaultSwitch.objects.update_or_create(point=point, defaults={"disabled": disabled})
    return switch
