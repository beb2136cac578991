"""Readable payloads: the SDK's serialized values decoded for display, the raw text kept.

The Python SDK checkpoints step, context and invoke results with its extended
serializer (``aws_durable_execution_sdk_python.serdes``): primitives and lists of
primitives as plain JSON, everything else as a type-tagged envelope
``{"t": "m", "v": {"total": {"t": "i", "v": 3}}}``, nested as deep as the value.
History events carry those texts as strings inside their own JSON (JSON inside
JSON), and error objects may carry one as ``ErrorData``.

``decode_payload`` turns such a text into plain JSON values for the viewers
(decimals, UUIDs, dates and bytes become strings, tuples lists, a ``BatchResult``
its dictionary). It is a reading of the wire format written here, not a call into
the SDK's codecs: nothing is imported, instantiated or executed, whatever the
payload says. A text that is not JSON, an envelope with an unknown tag, a value of
the wrong shape for its tag, or anything too deep or too large is shown as it
was stored (``Decoded.decoded`` is then False); decoding never raises.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any

from django.utils.html import format_html
from django.utils.safestring import SafeString

from executions.console.formatting import json_tree

# Larger texts are shown raw: decoding them would cost more than the page is worth.
DECODE_MAX_CHARS = 2_000_000
DECODE_MAX_DEPTH = 100
# JSON text found inside a decoded string is decoded again, this many levels deep.
NESTED_TEXT_LEVELS = 3
ENVELOPE_KEYS = frozenset({"t", "v"})


class _Undecodable(Exception):
    """A shape this reader does not know: the caller falls back to the raw text."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """A payload as the console shows it.

    ``value``: plain JSON values (or the text itself when ``is_json`` is False).
    ``raw``: the stored text, exactly. ``decoded``: something was unwrapped (an
    envelope, or JSON inside a string), so the raw text differs from what is shown.
    """

    value: Any
    raw: str
    decoded: bool
    is_json: bool

    @property
    def text(self) -> str:
        """The shown value as indented JSON (or the raw text)."""
        if not self.is_json:
            return self.raw
        try:
            return json.dumps(self.value, indent=2, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            return self.raw


EMPTY = Decoded(None, "", False, True)


def decode_payload(value: Any) -> Decoded:
    """``value`` (stored text, or JSON the database already parsed) decoded for display."""
    if value is None:
        return EMPTY
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    if not isinstance(value, str):
        return _decode_parsed(value, _dumps(value))
    return _decode_text(value, NESTED_TEXT_LEVELS)


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return str(value)


def _decode_text(text: str, levels: int) -> Decoded:
    if len(text) > DECODE_MAX_CHARS:
        return Decoded(text, text, False, False)
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return Decoded(text, text, False, False)
    decoded = _decode_parsed(parsed, text)
    inner = decoded.value
    # JSON inside JSON: a value that is itself the text of an object or a list.
    if levels > 1 and isinstance(inner, str) and inner.strip()[:1] in ("{", "["):
        nested = _decode_text(inner, levels - 1)
        if nested.is_json:
            return Decoded(nested.value, text, True, True)
    return decoded


def _decode_parsed(parsed: Any, raw: str) -> Decoded:
    if not _is_envelope(parsed):
        # Plain JSON (primitives, lists of primitives, a handler's own JSON): shown as it is.
        # Envelopes are only read at the root and inside envelopes, as the SDK does, so a
        # plain object that happens to hold {"t": …, "v": …} is not misread.
        return Decoded(parsed, raw, False, True)
    try:
        return Decoded(_envelope(parsed, 0), raw, True, True)
    except (_Undecodable, RecursionError):
        return Decoded(parsed, raw, False, True)


def _is_envelope(value: Any) -> bool:
    return isinstance(value, dict) and value.keys() == ENVELOPE_KEYS and isinstance(value["t"], str)


def _element(value: Any, depth: int) -> Any:
    """An element inside a container envelope: an envelope itself (the SDK checks "t" and "v")."""
    if isinstance(value, dict) and "t" in value and "v" in value:
        return _envelope(value, depth)
    return value


def _envelope(envelope: dict[str, Any], depth: int) -> Any:
    if depth > DECODE_MAX_DEPTH:
        raise _Undecodable
    tag, value = envelope["t"], envelope["v"]
    reader = _READERS.get(tag) if isinstance(tag, str) else None
    if reader is None:
        raise _Undecodable
    return reader(value, depth + 1)


def _expect(value: Any, *types: type) -> Any:
    # bool is an int in Python, but never a valid "i" or "f" value on the wire.
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise _Undecodable
    return value


def _list(value: Any, depth: int) -> list[Any]:
    return [_element(item, depth) for item in _expect(value, list)]


def _dict(value: Any, depth: int) -> dict[str, Any]:
    return {str(key): _element(item, depth) for key, item in _expect(value, dict).items()}


def _none(value: Any, depth: int) -> None:
    return None


def _bytes(value: Any, depth: int) -> str:
    return f"base64:{_expect(value, str)}"


_READERS: dict[str, Any] = {
    "n": _none,
    "s": lambda value, depth: _expect(value, str),
    "i": lambda value, depth: _expect(value, int),
    "f": lambda value, depth: _expect(value, int, float),
    "b": lambda value, depth: _expect(value, bool),
    "B": _bytes,
    "u": lambda value, depth: _expect(value, str),  # UUID
    "d": lambda value, depth: _expect(value, str),  # Decimal, as its exact digits
    "dt": lambda value, depth: _expect(value, str),  # datetime, ISO 8601
    "D": lambda value, depth: _expect(value, str),  # date
    "t": _list,  # tuple
    "l": _list,
    "m": _dict,
    "br": _dict,  # BatchResult: {"all": [items], "completionReason": ...}
}


# --- for templates ----------------------------------------------------------------------------


def decoded_json(value: Any) -> str:
    """The decoded value as indented JSON text (the raw text when it cannot be read)."""
    return decode_payload(value).text


def payload_view(value: Any) -> SafeString:
    """A payload for a viewer: the decoded value as a JSON tree, the raw text one click away."""
    decoded = decode_payload(value)
    if value is None:
        return format_html('<span class="muted">{}</span>', "none")
    # As JSON text, so a decoded string is shown as a string, not parsed again.
    shown = (
        json_tree(_dumps(decoded.value))
        if decoded.is_json
        else format_html('<pre class="json">{}</pre>', decoded.raw)
    )
    if not decoded.decoded:
        return format_html('<div class="payload">{}</div>', shown)
    return format_html(
        '<div class="payload" data-decoded>{}<details class="raw" data-testid="raw-payload">'
        '<summary>Raw <span class="muted small">as stored</span></summary>'
        '<pre class="json">{}</pre></details></div>',
        shown,
        decoded.raw,
    )


def preview(value: Any, limit: int = 120) -> str:
    """One line of the decoded value, for tables: ``{"hotel": "Grand Budapest", …}``."""
    decoded = decode_payload(value)
    if not decoded.is_json:
        text = decoded.raw
    else:
        try:
            text = json.dumps(decoded.value, ensure_ascii=False, separators=(", ", ": "))
        except (TypeError, ValueError, RecursionError):
            text = decoded.raw
    return text if len(text) <= limit else text[: limit - 1] + "…"


def decoded_details(details: dict[str, Any] | None) -> dict[str, Any]:
    """A history event's details with every ``{"Payload": …}`` decoded (and ``ErrorData`` in errors);
    the timestamps are left out: the page shows them as times (``detail_times``)."""
    out: dict[str, Any] = {}
    for key, item in (details or {}).items():
        if detail_time(key, item) is not None:
            continue
        if isinstance(item, dict) and "Payload" in item:
            item = {**item, "Payload": _readable(item["Payload"])}
        out[key] = item
    return out


def _readable(payload: Any) -> Any:
    if isinstance(payload, dict):  # an error object
        if "ErrorData" in payload:
            return {**payload, "ErrorData": decode_payload(payload["ErrorData"]).value}
        return payload
    return decode_payload(payload).value


def detail_time(key: str, value: Any) -> datetime.datetime | None:
    """A ``…Timestamp`` detail (epoch seconds, as the history stores them) as a moment; else None."""
    if not key.endswith("Timestamp") or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.datetime.fromtimestamp(value, datetime.UTC)
    except (OverflowError, OSError, ValueError):  # not a time after all: shown as stored
        return None


def detail_times(details: dict[str, Any] | None) -> list[tuple[str, datetime.datetime]]:
    """(key, moment) for each timestamp of a history event's details, in their order."""
    found = ((key, detail_time(key, value)) for key, value in (details or {}).items())
    return [(key, moment) for key, moment in found if moment is not None]


def details_changed(details: dict[str, Any] | None) -> bool:
    """Whether the readable details differ from the stored ones (else no raw view is needed)."""
    for key, item in (details or {}).items():
        if detail_time(key, item) is not None:
            return True
        if isinstance(item, dict) and "Payload" in item:
            payload = item["Payload"]
            if isinstance(payload, str) or (isinstance(payload, dict) and "ErrorData" in payload):
                return True
    return False
