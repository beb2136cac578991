"""Browser tests: a real console server process and headless Chromium driven by Playwright.

The server is `durable serve` in embedded mode (its own worker threads and
scheduler) against the test session's PostgreSQL database; the browser is
Debian's `chromium`, launched by Playwright with ``executable_path`` (no
browser download). Screenshots go to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import os
import shutil
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from tests.conftest import REPO_ROOT, SpawnedProcess
from tests.polling import wait_until
from tests.servers import free_port

SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    pytest.fail("headless Chromium is missing: apt-get install chromium (Debian's package)")


@dataclass
class LiveConsole:
    url: str
    process: SpawnedProcess

    def at(self, path: str) -> str:
        return self.url.rstrip("/") + path


@pytest.fixture
def live_console(
    requires_postgresql: None, spawn_process: Callable[..., SpawnedProcess], tmp_path: Path
) -> LiveConsole:
    """A console server process with embedded workers, on the test database."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = spawn_process(
        [sys.executable, "manage.py", "durable", "serve", "--port", str(port)],
        env={
            "CELERY_BROKER_URL": None,
            "DURABLE_VAR_DIR": str(tmp_path / "var"),
            # E-mails print to the server's log (the console backend), links point here.
            "EMAIL_HOST": None,
            "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
            "DURABLE_PUBLIC_URL": url,
        },
        name="console",
    )

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    wait_until(healthy, timeout=30, message="the console server did not start")
    return LiveConsole(url, process)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the Python package playwright is missing: pip install -r requirements-dev.txt")
    # Playwright's sync API keeps an event loop on this thread; the test's own ORM
    # calls are still synchronous, which Django must be told (test-only setting).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(15_000)
    browser_page = context.new_page()
    yield browser_page
    context.close()


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page: Any, console: LiveConsole, username: str, password: str) -> None:
    page.goto(console.at("/accounts/login/"))
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


ADMIN_PASSWORD = "browser-test-password"


@pytest.fixture
def console(live_console: LiveConsole, page: Any) -> Iterator[tuple[LiveConsole, Any]]:
    """A console server with the demo functions, and a page logged in as a superuser."""
    from durable_console.bootstrap import register_demo_functions

    register_demo_functions()
    get_user_model().objects.create_superuser("admin", "admin@example.com", ADMIN_PASSWORD)
    log_in(page, live_console, "admin", ADMIN_PASSWORD)
    yield live_console, page
