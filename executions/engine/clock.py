"""The engine's clock. Tests replace it to jump over waits and timeouts."""

from __future__ import annotations

import datetime
from collections.abc import Callable

_now: Callable[[], datetime.datetime] | None = None


def now() -> datetime.datetime:
    """Current time, timezone-aware UTC."""
    if _now is not None:
        return _now()
    return datetime.datetime.now(datetime.UTC)


def set_clock(clock: Callable[[], datetime.datetime] | None) -> None:
    """Install a replacement clock (None restores the real one)."""
    global _now
    _now = clock
