"""Login throttling for the console's and the admin's login forms.

After ``DURABLE_LOGIN_MAX_FAILURES`` failed logins for one user name from one client address,
that pair is refused (even with the right password, so guessing learns nothing) until
``DURABLE_LOGIN_LOCKOUT_SECONDS`` after its first failure. Counts live in Django's cache:
Redis when ``REDIS_URL`` is set (shared by every web process), else the process's memory (the
embedded server is one process). The key is a hash, so user names typed in never sit in Redis.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.http import HttpRequest

logger = logging.getLogger(__name__)


def _key(username: str, address: str) -> str:
    digest = hashlib.sha256(f"{username.casefold()}\n{address}".encode()).hexdigest()
    return f"login-failures:{digest}"


def login_blocked(username: str, address: str) -> bool:
    try:
        failures = cache.get(_key(username, address)) or 0
    except Exception:  # the cache is down: let people log in rather than lock everyone out
        logger.exception("login throttling unavailable: cannot read the cache")
        return False
    return failures >= settings.DURABLE_LOGIN_MAX_FAILURES


def login_failed(username: str, address: str) -> None:
    """Count one failure; the window starts at the first one."""
    try:
        failures = _count_failure(_key(username, address), settings.DURABLE_LOGIN_LOCKOUT_SECONDS)
    except Exception:  # see login_blocked
        logger.exception("login throttling unavailable: cannot write the cache")
        return
    if failures == settings.DURABLE_LOGIN_MAX_FAILURES:
        logger.warning(
            "%d failed logins for %r from %s: refused for up to %d s",
            failures,
            username,
            address,
            settings.DURABLE_LOGIN_LOCKOUT_SECONDS,
        )


def _count_failure(key: str, window: int) -> int:
    cache.add(key, 0, timeout=window)
    try:
        return cache.incr(key)  # atomic in Redis and in the in-memory cache
    except ValueError:  # expired between add and incr: a new window
        cache.set(key, 1, timeout=window)
        return 1


def login_succeeded(username: str, address: str) -> None:
    try:
        cache.delete(_key(username, address))
    except Exception:
        logger.exception("login throttling unavailable: cannot write the cache")


def client_address(request: HttpRequest | None) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is whatever the client says. Behind a proxy on
    # another host, uvicorn's FORWARDED_ALLOW_IPS makes REMOTE_ADDR the real client.
    return (request.META.get("REMOTE_ADDR") if request is not None else None) or "unknown"


class ThrottledLoginMixin:
    """For an AuthenticationForm: refuse a throttled user name and address, count failures."""

    request: HttpRequest | None
    cleaned_data: dict[str, Any]
    throttled = False

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        if not username or not self.cleaned_data.get("password"):
            return super().clean()  # type: ignore[misc]  # the field errors say what is missing
        address = client_address(self.request)
        if login_blocked(username, address):
            self.throttled = True
            minutes = max(1, settings.DURABLE_LOGIN_LOCKOUT_SECONDS // 60)
            raise forms.ValidationError(
                f"Too many failed logins for this user name from your address. "
                f"Try again in {minutes} minutes.",
                code="throttled",
            )
        try:
            cleaned: dict[str, Any] = super().clean()  # type: ignore[misc]
        except forms.ValidationError:
            login_failed(username, address)
            raise
        login_succeeded(username, address)
        return cleaned


class ThrottledAuthenticationForm(ThrottledLoginMixin, AuthenticationForm):
    """The console's login form (/accounts/login/)."""


class ThrottledAdminAuthenticationForm(ThrottledLoginMixin, AdminAuthenticationForm):
    """The admin's login form (/admin/login/): the same passwords, the same throttle."""
