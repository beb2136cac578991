"""Template filters for the console: the functions of ``executions.console.formatting``."""

from __future__ import annotations

import json
from typing import Any

from django import template

from executions.console import formatting
from executions.console.timeline import visible_details

register = template.Library()

FILTERS = (
    formatting.duration,
    formatting.elapsed,
    formatting.pretty_json,
    formatting.json_tree,
    formatting.payload_size,
    formatting.error_message,
    formatting.status_class,
    formatting.percent,
    formatting.isoformat,
    formatting.event_summary,
    formatting.add_delta,
)
for _filter in FILTERS:
    register.filter(_filter.__name__, _filter)


# Times: {{ moment|local_time }} (or :"time", :"precise"), {{ deadline|countdown }}, {{ past|ago }}.
register.filter("local_time", formatting.time_tag)
register.filter("countdown", formatting.countdown_tag)
register.filter("ago", formatting.ago)


@register.filter
def event_details(details: dict[str, Any] | None) -> str:
    """A history event's details as pretty JSON, without the callback seed."""
    return json.dumps(visible_details(details or {}), indent=2, ensure_ascii=False, default=str)
