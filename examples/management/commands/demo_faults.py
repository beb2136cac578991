"""``manage.py demo_faults on|off POINT``: switch a demo fault point's injected faults."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from examples.services import FAULT_POINTS
from examples.switches import fault_switch_set


class Command(BaseCommand):
    help = "Turn the injected faults of a demo fault point off (the outage is over) or back on."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("state", choices=["on", "off", "list"])
        parser.add_argument("point", nargs="?", help=f"one of: {', '.join(FAULT_POINTS)}")

    def handle(self, *args: Any, **options: Any) -> None:
        from examples.models import FaultSwitch

        if options["state"] == "list":
            for switch in FaultSwitch.objects.order_by("point"):
                self.stdout.write(str(switch))
            return
        point = options["point"]
        if point not in FAULT_POINTS:
            raise CommandError(f"unknown fault point {point!r}; known: {', '.join(FAULT_POINTS)}")
        fault_switch_set(point, disabled=options["state"] == "off")
        self.stdout.write(f"{point}: faults {options['state']}")
