"""The test harness itself: real PostgreSQL and Redis, and processes started by tests."""

from __future__ import annotations

import sys

import pytest
import redis
from django.conf import settings
from django.db import connection

from tests.polling import WaitTimeout, wait_until


@pytest.mark.django_db
def test_database_is_postgresql(requires_postgresql: None) -> None:
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database(), current_setting('server_version_num')::int")
        name, version = cursor.fetchone()
    assert name.startswith("test_")
    assert version >= 150000


def test_redis_answers_ping(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping() is True
    finally:
        client.close()
    assert redis_url == settings.CELERY_BROKER_URL
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"


@pytest.mark.django_db
def test_spawned_process_sees_the_test_database(spawn_process, requires_postgresql: None) -> None:
    script = "import os, time; print('db', os.environ['DATABASE_URL'], flush=True); time.sleep(60)"
    child = spawn_process([sys.executable, "-c", script], name="sleeper")
    child.wait_for_log("db ", timeout=10)
    assert child.log_text().strip().endswith("/" + connection.settings_dict["NAME"])
    assert child.is_running()
    assert child.stop() != 0  # killed by the harness, not finished


def test_spawned_process_exit_fails_the_wait_at_once(spawn_process) -> None:
    child = spawn_process([sys.executable, "-c", "print('bye'); raise SystemExit(3)"])
    with pytest.raises(WaitTimeout, match="exited with code 3"):
        child.wait_until(lambda: False, timeout=30, message="something that never happens")
    assert "bye" in child.log_text()


def test_wait_until_returns_the_value_and_times_out() -> None:
    values = iter([0, 0, "done"])
    assert wait_until(lambda: next(values), timeout=5, message="third value") == "done"
    with pytest.raises(WaitTimeout, match="never"):
        wait_until(lambda: None, timeout=0.1, message="never")
