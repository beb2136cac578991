"""Formatting for the console: durations, JSON viewers, error lines, status classes.

Plain functions; the template filters in ``executions/templatetags/console.py`` register
them, and Python code (the timeline) calls them directly.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from executions.engine import clock

# Above this size a payload is shown as plain pretty-printed text: a tree of
# thousands of <details> elements costs more than it helps.
TREE_MAX_CHARS = 50_000
PREVIEW_MAX_CHARS = 200_000


def duration(value: datetime.timedelta | float | int | None) -> str:
    """``350 ms``, ``4.2 s``, ``3 min 5 s``, ``2 h 10 min``, ``3 d 4 h``, ``3 d 4 h 10 min``."""
    if value is None or value == "":
        return ""
    seconds = value.total_seconds() if isinstance(value, datetime.timedelta) else float(value)
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    if seconds < 1:
        return f"{sign}{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{sign}{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{sign}{minutes} min {secs} s" if secs else f"{sign}{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{sign}{hours} h {minutes} min" if minutes else f"{sign}{hours} h"
    days, hours = divmod(hours, 24)
    # Minutes kept past two days: a deadline 48 h 8 min away is "2 d 0 h 8 min", not "2 d"
    # next to a callback's "47 h 52 min" (the same countdown, coarser by up to an hour).
    if minutes:
        return f"{sign}{days} d {hours} h {minutes} min"
    return f"{sign}{days} d {hours} h" if hours else f"{sign}{days} d"


def elapsed(start: datetime.datetime | None, end: datetime.datetime | None = None) -> str:
    """The duration from ``start`` to ``end`` (or to now, for something still running)."""
    if start is None:
        return ""

    return duration((end or clock.now()) - start)


def parse_json(text: Any) -> tuple[bool, Any]:
    """(True, value) for JSON text or an already-parsed value; (False, text) otherwise."""
    if text is None:
        return True, None
    if not isinstance(text, str):
        return True, text
    try:
        return True, json.loads(text)
    except (ValueError, RecursionError):  # nested deeper than the stack allows: shown as text
        return False, text


def pretty_json(value: Any) -> str:
    """JSON text (or a value) pretty-printed; text that is not JSON comes back unchanged."""
    ok, parsed = parse_json(value)
    if not ok:
        return str(value)
    try:
        text = json.dumps(parsed, indent=2, ensure_ascii=False, sort_keys=False)
    except RecursionError:
        return str(value)
    if len(text) > PREVIEW_MAX_CHARS:
        return text[:PREVIEW_MAX_CHARS] + "\n… (truncated; download for all of it)"
    return text


def json_tree(value: Any) -> SafeString:
    """A collapsible tree of nested <details> for JSON; small payloads only (else a <pre>)."""
    ok, parsed = parse_json(value)
    if ok and len(str(value)) <= TREE_MAX_CHARS:
        try:
            return format_html('<div class="json-tree">{}</div>', _node(parsed, 0))
        except RecursionError:  # too deep to draw as a tree: the text below
            pass
    return format_html('<pre class="json">{}</pre>', pretty_json(value))


def _node(value: Any, depth: int) -> SafeString:
    if isinstance(value, dict) and value:
        pairs = ((json.dumps(k), _node(v, depth + 1)) for k, v in value.items())
        items = format_html_join("", '<li><span class="json-key">{}</span>: {}</li>', pairs)
        return _branch("{", "}", _count(len(value), "key"), items, depth)
    if isinstance(value, list) and value:
        items = format_html_join("", "<li>{}</li>", ((_node(v, depth + 1),) for v in value))
        return _branch("[", "]", _count(len(value), "item"), items, depth)
    kind = "null" if value is None else type(value).__name__
    return format_html('<span class="json-{}">{}</span>', kind, json.dumps(value, ensure_ascii=False))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _branch(opening: str, closing: str, summary: str, items: SafeString, depth: int) -> SafeString:
    # Deep levels start folded so a large document opens at a readable size.
    is_open = mark_safe(" open") if depth < 3 else ""
    return format_html(
        '<details{}><summary>{} <span class="json-count">{}</span></summary><ul>{}</ul>{}</details>',
        is_open,
        opening,
        summary,
        items,
        closing,
    )


def payload_size(value: Any) -> str:
    if value is None:
        return ""
    size = len(value.encode()) if isinstance(value, str) else len(json.dumps(value).encode())
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024 / 1024:.1f} MiB"


def error_message(error: Any) -> str:
    """The one-line message of a Lambda error object."""
    if not error:
        return ""
    if isinstance(error, dict):
        return str(error.get("ErrorMessage") or error.get("ErrorType") or json.dumps(error))[:300]
    return str(error)[:300]


def percent(fraction: float | None) -> str:
    """A share as a percentage with one decimal: 3 failed of 18 is "16.7%"; None is ""."""
    if fraction is None:
        return ""
    return f"{fraction * 100:.1f}%"


def status_class(status: str | None) -> str:
    return f"st-{(status or 'unknown').lower().replace('_', '-')}"


def isoformat(value: datetime.datetime | None) -> str:
    return value.isoformat() if value else ""


def event_summary(details: dict[str, Any] | None) -> str:
    """One line for the history table: the error message, or which payload the event carries."""
    details = details or {}
    error = (details.get("Error") or {}).get("Payload") if isinstance(details.get("Error"), dict) else None
    if error:
        return error_message(error)
    parts = []
    for key, value in details.items():
        if key == "CallbackSeed" or value in (None, "", {}):
            continue
        if isinstance(value, dict) and "Payload" in value:
            parts.append(f"{key}: {payload_size(value['Payload']) or 'empty'}")
        elif not isinstance(value, dict | list):
            parts.append(f"{key}: {value}")
    return ", ".join(parts)[:200]


def add_delta(moment: datetime.datetime | None, delta: datetime.timedelta | None) -> datetime.datetime | None:
    """``moment + delta`` (a deadline from now and the time left)."""
    if moment is None or delta is None:
        return moment
    return moment + delta


# --- one way to show time ------------------------------------------------------------------
#
# Every moment the console shows is a <time datetime="ISO"> rendered here: the server writes it
# in UTC with a "UTC" label (what a browser without JavaScript shows), and console.js rewrites
# the text in the browser's zone, keeping the UTC time in the title. Countdowns ("in 3 min 5 s",
# "2 h ago") are the duration format above at whole seconds; console.js ticks the same text.

TIME_STYLES = {
    "datetime": "%Y-%m-%d %H:%M:%S",
    "time": "%H:%M:%S",
    "precise": "%H:%M:%S.%f",  # cut to milliseconds below
    # The date with milliseconds: a step's start and end, an attempt (the side panel).
    "datetime-ms": "%Y-%m-%d %H:%M:%S.%f",
}
MILLISECOND_STYLES = frozenset({"precise", "datetime-ms"})


def utc_text(value: datetime.datetime, style: str = "datetime") -> str:
    """``2026-11-30 12:00:05 UTC`` (``time``: ``12:00:05 UTC``; ``precise`` adds milliseconds,
    ``datetime-ms`` the date and milliseconds)."""
    text = value.astimezone(datetime.UTC).strftime(TIME_STYLES[style])
    return f"{text[:-3] if style in MILLISECOND_STYLES else text} UTC"


def time_tag(value: datetime.datetime | None, style: str = "datetime") -> SafeString | str:
    """``<time datetime=ISO data-local=style title="… UTC">… UTC</time>``; "" for None."""
    if value is None:
        return ""
    utc = utc_text(value, style)
    return format_html(
        '<time datetime="{}" data-local="{}" title="{}">{}</time>',
        value.astimezone(datetime.UTC).isoformat(),
        style,
        utc,
        utc,
    )


def whole_duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 10 min``: the duration format in whole seconds."""
    whole = round(abs(seconds))
    return f"{whole} s" if whole < 60 else duration(whole)


def countdown_text(seconds: float) -> str:
    """``in 42 s``, ``in 3 min 5 s``, ``2 h 10 min ago``: whole seconds in the duration format."""
    text = whole_duration(seconds)
    return f"in {text}" if seconds >= 0 else f"{text} ago"


def countdown_tag(moment: datetime.datetime | None, now: datetime.datetime | None = None) -> SafeString | str:
    """``<time data-countdown datetime=ISO title="… UTC">in 3 min 5 s</time>``, ticked by console.js."""
    if moment is None:
        return ""
    seconds = (moment - (now or clock.now())).total_seconds()
    return format_html(
        '<time data-countdown datetime="{}" title="{}">{}</time>',
        moment.astimezone(datetime.UTC).isoformat(),
        utc_text(moment),
        countdown_text(seconds),
    )


def ago(value: datetime.datetime | None, now: datetime.datetime | None = None) -> SafeString | str:
    """A past moment as a countdown (``3 min 5 s ago``), in a <time> with its UTC time on hover."""
    return countdown_tag(value, now)
