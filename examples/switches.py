"""Operator switches for the demo's fault injection."""

from __future__ import annotations

from django.db import transaction

from examples.models import FaultSwitch
from executions import audit
from executions.audit import Actor


def fault_switch_set(point: str, *, disabled: bool) -> FaultSwitch:
    switch, _ = FaultSwitch.objects.update_or_create(point=point, defaults={"disabled": disabled})
    return switch


def fault_switch_set_by(actor: Actor, point: str, *, disabled: bool) -> FaultSwitch:
    """An operator switches a fault point off (the outage is over) or back on; audited."""
    from examples.services import FAULT_POINTS

    if point not in FAULT_POINTS:
        raise ValueError(f"unknown fault point {point!r}")
    with transaction.atomic():
        switch = fault_switch_set(point, disabled=disabled)
        audit.record(actor, "fault.disable" if disabled else "fault.enable", point)
        return switch
