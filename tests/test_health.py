"""``/healthz`` (alive) and ``/readyz`` (database, migrations, Redis), issue 13.

In-process: both answer without a login; a migration missing from the database
or a Redis that does not answer makes ``/readyz`` 503 with the reason. End to
end: a web process reaches the session's PostgreSQL through a TCP relay the
test controls; closing the relay (every connection cut, nothing listening) is
the database going away for that process, opening it again is the database
coming back, on the same address.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client, override_settings

from tests.conftest import SpawnedProcess, database_url_for_children
from tests.polling import wait_until
from tests.servers import free_port

pytestmark = pytest.mark.django_db


def test_healthz_and_readyz_answer_without_login() -> None:
    client = Client()
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


def test_readyz_names_a_migration_the_database_lacks() -> None:
    # Rolled back with the test: the database as a process started before `migrate` sees it.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_migrations WHERE app = 'executions' AND name LIKE %s", ["0010%"])
    ready = Client().get("/readyz")
    assert ready.status_code == 503
    (reason,) = ready.json()["reasons"]
    assert reason.startswith("migrations not applied: executions.0010_")
    assert "python manage.py migrate" in reason


def test_readyz_is_503_while_redis_does_not_answer() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with override_settings(REDIS_URL=dead, CELERY_BROKER_URL=dead):
        ready = Client().get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    (reason,) = ready.json()["reasons"]  # one server, named once
    assert reason.startswith("redis unreachable (REDIS_URL): ")


class Relay:
    """A TCP relay from a local port to ``target``, which the test can close and open again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def open(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        """Nothing listens any more and every relayed connection is cut, as when a server dies."""
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, []
        for sock in [listener, *sockets]:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def probe(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_readyz_is_503_while_the_database_is_away_and_200_once_it_is_back(
    requires_postgresql: None, spawn_process: Callable[..., SpawnedProcess]
) -> None:
    settings_dict = connection.settings_dict
    relay = Relay((settings_dict["HOST"] or "127.0.0.1", int(settings_dict["PORT"])))
    relay.open()
    database_url = database_url_for_children()
    assert database_url is not None
    through_relay = database_url.replace(f":{settings_dict['PORT']}/", f":{relay.port}/")
    port = free_port()
    web = spawn_process(
        [sys.executable, "manage.py", "durable", "serve", "--no-embedded", "--port", str(port)],
        env={"DATABASE_URL": through_relay},
        name="web",
    )
    base = f"http://127.0.0.1:{port}"
    web.wait_for_log(f"{base}/", timeout=60)
    try:
        assert probe(f"{base}/readyz") == (200, {"status": "ready"})

        relay.close()
        _, body = web.wait_until(lambda: (found := probe(f"{base}/readyz"))[0] == 503 and found, 30)
        assert body["status"] == "unavailable"
        (reason,) = body["reasons"]
        assert reason.startswith("database unreachable: ")
        assert probe(f"{base}/healthz") == (200, {"status": "ok"})  # alive all the same

        relay.open()
        wait_until(lambda: probe(f"{base}/readyz") == (200, {"status": "ready"}), 30, "ready again")
    finally:
        relay.close()
