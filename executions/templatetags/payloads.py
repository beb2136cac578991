"""Template filters for payloads: the SDK's serialized values decoded, the raw text kept
(``executions.console.payloads``)."""

from __future__ import annotations

import json
from typing import Any

from django import template

from executions.console import payloads
from executions.console.timeline import visible_details

register = template.Library()

register.filter("payload_view", payloads.payload_view)
register.filter("decoded_json", payloads.decoded_json)
register.filter("payload_preview", payloads.preview)
register.filter("detail_times", payloads.detail_times)


@register.filter
def readable_details(details: dict[str, Any] | None) -> str:
    """A history event's details as pretty JSON, payloads decoded, without the callback seed."""
    shown = payloads.decoded_details(visible_details(details or {}))
    return json.dumps(shown, indent=2, ensure_ascii=False, default=str)


@register.filter
def details_decoded(details: dict[str, Any] | None) -> bool:
    """Whether the readable details differ from the stored ones (then the raw view is offered)."""
    return payloads.details_changed(details)
