"""Template filters for the approvals pages: time left, and documents made readable."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django import template

from executions.console import formatting

if TYPE_CHECKING:
    from approvals.selectors import InboxQuery

register = template.Library()


@register.filter
def time_left(seconds: float | None) -> str:
    """How long a request stays open, in the console's one duration format; "" once past."""
    if seconds is None or seconds <= 0:
        return ""
    return formatting.whole_duration(seconds)


@dataclass(frozen=True)
class DocumentField:
    label: str
    text: str
    block: bool  # long or structured: shown as a block, not inline


@dataclass(frozen=True)
class DocumentView:
    """How to show a request's document: prose, labelled fields, or JSON."""

    kind: str  # "empty" | "text" | "fields" | "json"
    text: str = ""
    fields: tuple[DocumentField, ...] = ()


def _field(key: str, value: Any) -> DocumentField:
    label = str(key).replace("_", " ").capitalize()
    if isinstance(value, str):
        return DocumentField(label, value, block=len(value) > 80 or "\n" in value)
    if value is None or isinstance(value, bool | int | float):
        return DocumentField(label, json.dumps(value), block=False)
    return DocumentField(label, json.dumps(value, indent=2, ensure_ascii=False), block=True)


@register.filter
def document_view(document: Any) -> DocumentView:
    """A string is prose; an object's top-level keys become labelled fields; the rest is JSON."""
    if document in (None, "", {}, []):
        return DocumentView("empty")
    if isinstance(document, str):
        return DocumentView("text", text=document)
    if isinstance(document, dict):
        return DocumentView("fields", fields=tuple(_field(k, v) for k, v in document.items()))
    return DocumentView("json", text=json.dumps(document, indent=2, ensure_ascii=False))


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


_STATE_CLASSES = {
    "pending": "st-started",
    "approved": "st-succeeded",
    "confirmed": "st-succeeded",
    "rejected": "st-failed",
    "expired": "st-timed-out",
}


@register.filter
def state_class(state: str) -> str:
    """The console's badge colour for an approval or verification state."""
    return _STATE_CLASSES.get(str(state), "st-stopped")


@register.filter
def detail_url(query: InboxQuery, pk: int) -> str:
    """A request's page, keeping the list's search and order."""
    return query.detail_url(pk)
