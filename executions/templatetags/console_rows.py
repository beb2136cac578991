"""The execution list's and the waiting board's rows, built in Python (``executions.console.rows``)."""

from __future__ import annotations

import datetime
from typing import Any

from django import template
from django.utils.safestring import SafeString

from executions.console import rows

register = template.Library()


@register.filter
def execution_row(execution: Any) -> SafeString:
    return rows.execution_row(execution)


@register.simple_tag
def waiting_row(item: Any, now: datetime.datetime, can_complete: bool) -> SafeString:
    return rows.waiting_row(item, now, can_complete=bool(can_complete))
