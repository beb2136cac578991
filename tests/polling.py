"""Waiting for something to become true, with a deadline instead of a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition did not hold before the deadline (an AssertionError, so tests fail)."""


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    message: str = "condition",
    *,
    interval: float = 0.02,
    max_interval: float = 0.25,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that value.

    Polls with a growing interval (from ``interval`` up to ``max_interval``) until
    ``timeout`` seconds have passed, then raises :class:`WaitTimeout` naming
    ``message``. Exceptions of the types in ``ignore`` count as "not yet" (the last
    one is chained to the timeout); any other exception propagates at once.
    """
    deadline = time.monotonic() + timeout
    delay = interval
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
        except ignore as error:
            last_error = error
        else:
            if result:
                return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {message}{detail}") from (last_error)
        time.sleep(min(delay, remaining))
        delay = min(delay * 1.5, max_interval)
