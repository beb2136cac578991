"""Liveness and readiness for load balancers and orchestrators (docs/operations.md).

``/healthz`` says the process answers, nothing more: a liveness probe that failed
while the database restarted would have every web process killed for it.
``/readyz`` says whether this process can do its work now: the database answers,
every migration on disk is applied (a process started before the release step
finished would fail on missing columns), and Redis answers when one is
configured (the broker's hints, live updates, the cache). Otherwise 503, with
the reasons. Neither needs a login.
"""

from __future__ import annotations

import functools
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.http import HttpRequest, JsonResponse

# A probe must answer within the orchestrator's timeout (often 1 s): a Redis that
# accepts no connection is reported down rather than waited for.
REDIS_TIMEOUT_SECONDS = 1.0


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    problems: list[str] = []
    connection = connections["default"]
    try:
        problems += database_problems(connection)
    finally:
        # Under ASGI each request runs on a thread that ends with it, so its connection
        # would never be reused; and a probe should open a fresh one anyway.
        if hasattr(request, "scope"):
            connection.close()
    problems += redis_problems()
    if problems:
        return JsonResponse({"status": "unavailable", "reasons": problems}, status=503)
    return JsonResponse({"status": "ready"})


def database_problems(connection: BaseDatabaseWrapper) -> list[str]:
    """Why the database cannot serve this code: unreachable, or migrations not applied."""
    try:
        applied = MigrationRecorder(connection).applied_migrations()
    except DatabaseError as exc:
        return [f"database unreachable: {_first_line(exc)}"]
    pending = sorted(set(migrations_on_disk()) - set(applied))
    if not pending:
        return []
    names = ", ".join(f"{app}.{name}" for app, name in pending[:5])
    more = f" and {len(pending) - 5} more" if len(pending) > 5 else ""
    return [f"migrations not applied: {names}{more} (run python manage.py migrate)"]


@functools.cache
def migrations_on_disk() -> tuple[tuple[str, str], ...]:
    """Every migration this code ships (read once: the files do not change under a process)."""
    return tuple(MigrationLoader(None, ignore_no_migrations=True).graph.nodes)


def redis_problems() -> list[str]:
    problems = []
    for name, url in redis_urls().items():
        try:
            _redis_client(url).ping()
        except redis.RedisError as exc:
            problems.append(f"redis unreachable ({name}): {_first_line(exc)}")
    return problems


def redis_urls() -> dict[str, str]:
    """The Redis servers this deployment uses, by the setting that names them."""
    found = {"REDIS_URL": settings.REDIS_URL, "CELERY_BROKER_URL": settings.CELERY_BROKER_URL}
    urls: dict[str, str] = {}
    for name, url in found.items():
        if url.startswith(("redis://", "rediss://", "unix://")) and url not in urls.values():
            urls[name] = url
    return urls


@functools.cache
def _redis_client(url: str) -> Any:
    return redis.Redis.from_url(
        url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
