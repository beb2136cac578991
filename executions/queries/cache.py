"""Counts the console's pages share for a few seconds, refreshed off the request path.

The home page's exact counts read every execution's index entry (0.2-0.4 s at a million
rows), the list's chip counts up to 10,000 index entries per status, the charts every
execution started in their window: under load, each page view paying for them made the
pages 12x slower. Here a value computed once serves every view (and, with Redis as the
cache, every web process) for a few seconds:

- younger than ``FRESH_SECONDS``: served as it is;
- older, up to ``STALE_SECONDS``: served, and one background thread per process (one
  process at a time, by a lock in the cache) computes it again, so no view waits for it;
- missing or older than that: computed by the view.

Ages are on the engine clock (``executions.engine.clock``). A page that showed a value computed
before the view asks to be fetched again once a fresh one should be there
(``refresh_after_ms``), so a live refresh that got old counts is corrected without another
push. A cache that cannot be reached is skipped: the view computes, as without one.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.core.cache import cache
from django.db import connections

from executions.engine import clock

T = TypeVar("T")

logger = logging.getLogger(__name__)

FRESH_SECONDS = 5
STALE_SECONDS = 60
REFRESH_LOCK_SECONDS = 30  # a process that died while refreshing holds the lock this long
RECHECK_SECONDS = 1.0  # how soon a page that showed a value being refreshed looks again
PREFIX = "console"

_generation = 0  # bumped by forget(): keys of earlier generations are never read
ZERO = datetime.timedelta(0)
FRESH = datetime.timedelta(seconds=FRESH_SECONDS)
STALE = datetime.timedelta(seconds=STALE_SECONDS)


@dataclass(frozen=True)
class Cached(Generic[T]):
    """A value and the engine-clock time it was computed."""

    value: T
    computed_at: datetime.datetime


@dataclass(frozen=True)
class Wanted(Generic[T]):
    """A value a page wants from the cache: its name, and how to compute it for a moment."""

    name: str
    compute: Callable[[datetime.datetime], T]


def cached_many(wanted: Sequence[Wanted[Any]], *, now: datetime.datetime | None = None) -> list[Cached[Any]]:
    """Each wanted value from the cache, or computed (see the module docstring), in order.

    One round trip to the cache for all of them: under load every round trip waits
    for the cache server to be scheduled.
    """
    now = now or clock.now()
    keys = [f"{PREFIX}:{_generation}:{item.name}" for item in wanted]
    found = _get_many(keys)
    entries: list[Cached[Any]] = []
    computed: dict[str, Cached[Any]] = {}
    for item, key in zip(wanted, keys, strict=True):
        entry = found.get(key)
        age = now - entry.computed_at if entry is not None else STALE
        if entry is not None and ZERO <= age < STALE:  # a clock set back makes it unusable too
            if age >= FRESH:
                _refresher().submit(key, item.compute)
            entries.append(entry)
        else:
            entries.append(computed.setdefault(key, Cached(item.compute(now), now)))
    if computed:
        _set_many(computed)
    return entries


def cached(
    name: str, compute: Callable[[datetime.datetime], T], *, now: datetime.datetime | None = None
) -> Cached[T]:
    """One value: ``cached_many([Wanted(name, compute)])``."""
    return cached_many([Wanted(name, compute)], now=now)[0]


def refresh_after_ms(
    entries: Iterable[Cached[Any]], *, now: datetime.datetime, since: datetime.datetime | None = None
) -> int | None:
    """When a page showing ``entries`` should fetch itself again; None if it need not.

    It need not when every entry was computed at or after ``since`` (default ``now``:
    this view): a change after that pushes a live refresh of its own. Otherwise it
    looks again just after the oldest entry stops being fresh, or in a second when
    it already has (its refresh is under way).
    """
    since = min(since or now, now)
    behind = [entry.computed_at for entry in entries if entry.computed_at < since]
    if not behind:
        return None
    fresh_until = min(behind) + datetime.timedelta(seconds=FRESH_SECONDS)
    wait = max((fresh_until - now).total_seconds(), 0.0)
    return round((wait or RECHECK_SECONDS) * 1000) + 100


def since_from_query(value: str | None, now: datetime.datetime) -> datetime.datetime | None:
    """The ``counts_since`` a page's refetch sends back (epoch seconds); None if absent or unreadable."""
    try:
        moment = datetime.datetime.fromtimestamp(float(value or ""), tz=datetime.UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return min(moment, now)


def refetch_context(
    entries: Iterable[Cached[Any]], *, now: datetime.datetime, counts_since: str | None
) -> dict[str, Any]:
    """What a page's template needs to fetch itself again: ``refresh_ms`` (None: never)
    and ``counts_since``, the moment its refetch must see counts from (``?counts_since=``
    of this request when it is such a refetch, else this view)."""
    since = since_from_query(counts_since, now)
    return {
        "refresh_ms": refresh_after_ms(entries, now=now, since=since),
        "counts_since": f"{(since or now).timestamp():.3f}",
    }


def forget() -> None:
    """Make every value stored so far unreachable (tests: each starts with an empty cache)."""
    global _generation
    _generation += 1


def wait_for_refreshes(timeout: float = 10.0) -> None:
    """Wait until this process's refresher has nothing to do (tests, before their data goes)."""
    refresher = _instance
    if refresher is not None and refresher.pid == os.getpid():
        refresher.wait_idle(timeout)


# --- the cache, and the refresher ---------------------------------------------------------------


def _get_many(keys: list[str]) -> dict[str, Cached[Any]]:
    try:
        found = cache.get_many(keys)
    except Exception:
        logger.warning("console cache unavailable; computing %s", ", ".join(keys), exc_info=True)
        return {}
    return {key: entry for key, entry in found.items() if isinstance(entry, Cached)}


def _set_many(entries: dict[str, Cached[Any]]) -> None:
    try:
        cache.set_many(entries, timeout=STALE_SECONDS)
    except Exception:
        logger.warning("console cache unavailable; %s not stored", ", ".join(entries), exc_info=True)


def _lock(key: str) -> bool:
    """True for the one process that may refresh ``key`` now (the lock expires by itself)."""
    try:
        return bool(cache.add(f"{key}:refreshing", 1, timeout=REFRESH_LOCK_SECONDS))
    except Exception:
        return False  # no cache to share the value through: _get_many already said so


def _refresh(key: str, compute: Callable[[datetime.datetime], Any]) -> None:
    try:
        now = clock.now()
        _set_many({key: Cached(compute(now), now)})
    except Exception:  # the stale value stays; the next view past FRESH_SECONDS tries again
        logger.warning("console cache: refreshing %s failed", key, exc_info=True)
    finally:
        try:
            cache.delete(f"{key}:refreshing")
        except Exception:
            pass  # the lock expires by itself


class _Refresher:
    """This process's thread that computes stale values again, one after the other.

    One thread (not one per value) so a burst of stale values costs one database
    connection, given back when nothing is left to do.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.pending: dict[str, Callable[[datetime.datetime], Any]] = {}
        self.busy = False
        self.condition = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="console-cache", daemon=True)
        self.thread.start()

    def submit(self, key: str, compute: Callable[[datetime.datetime], Any]) -> None:
        with self.condition:
            if key in self.pending or not _lock(key):
                return  # queued here already, or another process (or this one) is on it
            self.pending[key] = compute
            self.condition.notify_all()

    def wait_idle(self, timeout: float) -> None:
        with self.condition:
            self.condition.wait_for(lambda: not self.pending and not self.busy, timeout)

    def _run(self) -> None:
        while True:
            with self.condition:
                self.condition.wait_for(lambda: bool(self.pending))
                key, compute = next(iter(self.pending.items()))
                self.busy = True
            try:
                _refresh(key, compute)
            finally:
                with self.condition:
                    del self.pending[key]
                    idle = not self.pending
                if idle:
                    connections.close_all()  # this thread's connection: nothing left to refresh
                with self.condition:
                    self.busy = False
                    self.condition.notify_all()


_instance: _Refresher | None = None
_instance_lock = threading.Lock()


def _refresher() -> _Refresher:
    """This process's refresher, started on first use (again in a forked process)."""
    global _instance
    with _instance_lock:
        if _instance is None or _instance.pid != os.getpid() or not _instance.thread.is_alive():
            _instance = _Refresher()
        return _instance
