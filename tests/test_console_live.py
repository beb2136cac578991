"""Live updates: live.notify coalesces, never raises, and publishes only ids (no query, no
render in the process that changed an execution); the consumers check permission on connect and
render their fragments, which equal a fresh render of the page's partials."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import django.db.backends
import django.template
import pytest
import template_partials
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connection, connections
from django.template.loader import render_to_string
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from durable_console.asgi import application
from executions import operator, services
from executions.audit import Actor
from executions.console import rows
from executions.engine import clock
from executions.live import fragments
from executions.live import updates as live
from executions.models import Execution
from tests.console_support import Cast, make_cast, register_demos
from tests.polling import wait_until

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def redis_layer(url: str) -> dict[str, Any]:
    """channels-redis, as in production, under a prefix of this test's own."""
    config = {"hosts": [url], "prefix": f"live-test-{os.urandom(4).hex()}"}
    return {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": config}}


# --- notify: coalescing, never raising -------------------------------------------------------


@pytest.fixture
def recorded_flushes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[set[int]]]:
    """Replace the render-and-send step; the pusher thread records what it would flush."""
    calls: list[set[int]] = []
    done = threading.Event()

    def record(ids: set[int], own_loop: Any = None) -> None:
        calls.append(set(ids))
        done.set()

    monkeypatch.setattr(live, "flush", record)
    yield calls


@override_settings(DURABLE_LIVE_DEBOUNCE_SECONDS=0.2)
def test_notify_coalesces_a_burst_into_one_flush(recorded_flushes: list[set[int]]) -> None:
    for execution_id in (1, 2, 1, 1, 3, 2):
        live.notify(execution_id)
    wait_until(lambda: recorded_flushes, timeout=3, message="the burst was never flushed")
    # A later sentinel proves no second flush of the burst came in between.
    live.notify(99)
    wait_until(lambda: len(recorded_flushes) >= 2, timeout=3, message="the sentinel was never flushed")
    assert recorded_flushes == [{1, 2, 3}, {99}]


@override_settings(DURABLE_LIVE_DEBOUNCE_SECONDS=0.05)
def test_notify_after_a_flush_starts_a_new_batch(recorded_flushes: list[set[int]]) -> None:
    live.notify(7)
    wait_until(lambda: recorded_flushes, timeout=3, message="7 was never flushed")
    live.notify(8)
    wait_until(lambda: len(recorded_flushes) >= 2, timeout=3, message="8 was never flushed")
    assert recorded_flushes == [{7}, {8}]


def test_notify_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise RuntimeError("no threads today")

    monkeypatch.setattr(live, "_pusher", broken)
    live.notify(1)  # swallowed and logged: the checkpoint path that called it goes on


@override_settings(DURABLE_LIVE_DEBOUNCE_SECONDS=0.01)
def test_a_failing_flush_does_not_stop_the_pusher(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[set[int]] = []

    def flaky(ids: set[int], own_loop: Any = None) -> None:
        seen.append(set(ids))
        if len(seen) == 1:
            raise RuntimeError("layer down")

    monkeypatch.setattr(live, "flush", flaky)
    live.notify(1)
    wait_until(lambda: seen, timeout=3, message="the first flush never ran")
    live.notify(2)
    wait_until(lambda: len(seen) >= 2, timeout=3, message="the pusher stopped after a failure")
    assert seen == [{1}, {2}]


# --- what is published: ids, with no query and no render ------------------------------------------

# Code that runs a query or renders a fragment: Django's database backends and template
# engine, the partials and the console's row builder.
PACKAGES = (django.db.backends, django.template, template_partials)
RENDER_OR_QUERY_CODE = (*(os.path.dirname(str(p.__file__)) + os.sep for p in PACKAGES), str(rows.__file__))


@contextmanager
def calls_to_render_or_query_code() -> Iterator[list[str]]:
    """Every call into that code, on this thread and on threads started meanwhile."""
    calls: list[str] = []

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename.startswith(RENDER_OR_QUERY_CODE):
            calls.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")

    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        yield calls
    finally:
        sys.setprofile(None)
        threading.setprofile(None)


def unused_ids(count: int) -> list[int]:
    """Ids no execution of this session has: a query for them would find nothing, but still run."""
    base = 10**12 + int.from_bytes(os.urandom(4), "big")
    return [base + n for n in range(count)]


def test_a_change_is_published_as_ids_without_a_query_or_a_render(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker process (no consumers, channels-redis): a burst becomes one tiny message per group."""
    first, second, sentinel = unused_ids(3)
    received: dict[str, list[dict[str, Any]]] = {"detail": [], "list": []}

    async def scenario() -> None:
        layer = get_channel_layer()
        detail, listing = await layer.new_channel(), await layer.new_channel()
        await layer.group_add(live.execution_group(first), detail)
        await layer.group_add(live.LIST_GROUP, listing)
        # A pusher of its own, started under the counter: the real path from notify on.
        monkeypatch.setattr(live, "_instance", None)
        with calls_to_render_or_query_code() as calls:
            for execution_id in (first, second, first, first, second):
                live.notify(execution_id)
            received["detail"].append(await asyncio.wait_for(layer.receive(detail), 5))
            received["list"].append(await asyncio.wait_for(layer.receive(listing), 5))
            live.notify(sentinel)  # the next list message is the sentinel's: the burst was one message
            received["list"].append(await asyncio.wait_for(layer.receive(listing), 5))
        assert calls == []

    with override_settings(CHANNEL_LAYERS=redis_layer(redis_url), DURABLE_LIVE_DEBOUNCE_SECONDS=0.1):
        run_async(scenario)
    [detail] = received["detail"]
    burst, after = received["list"]
    assert detail == {"type": "executions.changed", "ids": [first], "batch": burst["batch"]}
    assert burst == {"type": "executions.changed", "ids": [second, first], "batch": burst["batch"]}
    assert after["ids"] == [sentinel] and after["batch"] != burst["batch"]


@pytest.mark.django_db
def test_flush_itself_runs_no_query_and_no_render(redis_url: str) -> None:
    """What the pusher thread calls, on this thread: Django's own query counter agrees."""
    with (
        override_settings(CHANNEL_LAYERS=redis_layer(redis_url)),
        CaptureQueriesContext(connection) as queries,
        calls_to_render_or_query_code() as calls,
    ):
        live.flush(set(unused_ids(20)))
    assert len(queries) == 0
    assert calls == []


@pytest.mark.django_db
def test_with_the_in_memory_layer_and_no_server_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """Embedded worker threads (and sandbox children) without a websocket server skip the work."""
    monkeypatch.setattr(live, "_server_loop", None)
    with override_settings(CHANNEL_LAYERS=IN_MEMORY):
        layer = get_channel_layer()
        channel = asyncio.run(layer.new_channel())
        asyncio.run(layer.group_add(live.LIST_GROUP, channel))
        with calls_to_render_or_query_code() as calls:
            live.flush({1, 2})
        assert calls == []
        assert layer.channels.get(channel) is None or layer.channels[channel].empty()


# --- what is rendered ------------------------------------------------------------------------------


def page_header(execution: Execution) -> str:
    """What the detail page renders (its header), plus the placeholder that makes it refetch."""
    context = {"execution": execution}
    return render_to_string("executions/detail.html#header", context) + render_to_string(
        "executions/detail.html#live-sync", context
    )


@pytest.mark.django_db
def test_rendered_fragments_are_fresh_renders_of_the_page_partials(monkeypatch: pytest.MonkeyPatch) -> None:
    frozen = clock.now()
    monkeypatch.setattr(clock, "_now", lambda: frozen)  # "running for 3 s so far" must not tick
    register_demos()
    execution = services.execution_start(function="order-processing", input_payload="{}").execution
    execution = Execution.objects.select_related("function").get(pk=execution.pk)
    detail = fragments.execution_fragment(execution.pk, "batch-1")
    listing = fragments.list_fragment([execution.pk], "batch-1")
    assert detail == page_header(execution)
    assert "data-live-sync" in detail
    assert listing == render_to_string("executions/list.html#row", {"execution": execution})
    for html in (detail, listing):  # rendered without a request: nothing per-user, no CSRF token
        assert "csrfmiddlewaretoken" not in html and "X-CSRFToken" not in html


@pytest.mark.django_db
def test_a_publication_is_rendered_once_per_process_and_a_later_one_afresh() -> None:
    register_demos()
    execution = services.execution_start(function="order-processing", input_payload="{}").execution
    first = fragments.execution_fragment(execution.pk, "batch-a")
    with CaptureQueriesContext(connection) as queries:  # another watcher of the same publication
        assert fragments.execution_fragment(execution.pk, "batch-a") == first
    assert len(queries) == 0
    operator.stop(Actor.system("test"), execution.arn, "changed")
    assert "STOPPED" not in first
    assert "STOPPED" in fragments.execution_fragment(execution.pk, "batch-b")
    assert fragments.execution_fragment(10**15, "batch-b") == ""  # gone (or never was): nothing


# --- the consumers ---------------------------------------------------------------------------------


@pytest.fixture
def cast(transactional_db: None) -> Cast:
    return make_cast()


def headers_for(cast: Cast, role: str | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"origin", b"http://localhost")]
    if role is not None:
        session = cast.client(role).cookies["sessionid"].value
        headers.append((b"cookie", f"sessionid={session}".encode()))
    return headers


def run_async(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``scenario`` on a fresh event loop in a thread of its own.

    Not ``async_to_sync``: another test's fixture (a session-wide Playwright) may keep
    an event loop running on the main thread, where ``async_to_sync`` refuses to run.
    """
    failure: list[BaseException] = []

    async def main() -> None:
        try:
            await scenario()
        finally:  # the consumers' queries ran on asgiref's shared thread: close its connection
            await sync_to_async(connections.close_all)()

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name="ws-scenario")
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the websocket scenario did not finish"
    if failure:
        raise failure[0]


async def connect(path: str, headers: list[tuple[bytes, bytes]]) -> tuple[WebsocketCommunicator, bool]:
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    return communicator, connected


def running_execution() -> Execution:
    register_demos()
    return services.execution_start(function="document-approval", input_payload="{}").execution


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
@pytest.mark.parametrize(
    ("role", "allowed"),
    [("viewer", True), ("operator", True), ("approver", False), ("nobody", False), (None, False)],
)
def test_who_may_subscribe_to_an_execution_and_the_list(cast: Cast, role: str | None, allowed: bool) -> None:
    execution = running_execution()
    headers = headers_for(cast, role)

    async def scenario() -> None:
        for path in (f"/ws/executions/{execution.pk}/", "/ws/executions/"):
            communicator, connected = await connect(path, headers)
            assert connected is allowed, (role, path)
            await communicator.disconnect()

    run_async(scenario)


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
def test_unknown_execution_and_foreign_origin_are_refused(cast: Cast) -> None:
    admin = headers_for(cast, "admin")

    async def scenario() -> None:
        _, connected = await connect("/ws/executions/999999/", admin)
        assert not connected
        _, connected = await connect("/ws/executions/", [(b"origin", b"http://evil.example"), admin[1]])
        assert not connected

    run_async(scenario)


async def receive_until(communicator: Any, text: str, timeout: float = 5) -> str:
    """The first message containing ``text``; earlier ones are skipped (deadline-bound)."""
    deadline = time.monotonic() + timeout
    while True:
        message = await communicator.receive_from(timeout=max(0.1, deadline - time.monotonic()))
        if text in message:
            return message


@override_settings(CHANNEL_LAYERS=IN_MEMORY, DURABLE_LIVE_DEBOUNCE_SECONDS=0.05)
def test_a_watcher_receives_the_fragments_after_a_change(cast: Cast) -> None:
    execution = running_execution()

    def stop() -> None:
        operator.stop(Actor.console(cast["operator"]), execution.arn, "watch this")

    viewer = headers_for(cast, "viewer")

    async def scenario() -> None:
        detail, ok_detail = await connect(f"/ws/executions/{execution.pk}/", viewer)
        listing, ok_list = await connect("/ws/executions/", viewer)
        assert ok_detail and ok_list
        await database_sync_to_async(stop)()  # commits; notify runs after commit
        # A push about the execution's creation may still be in flight: wait for the stop.
        pushed = await receive_until(detail, "STOPPED")
        assert f'id="execution-{execution.pk}-header"' in pushed
        assert "data-live-sync" in pushed
        row = await receive_until(listing, "STOPPED")
        assert f'id="execution-row-{execution.pk}"' in row
        await detail.disconnect()
        await listing.disconnect()

    run_async(scenario)


@pytest.mark.parametrize("layer", ["in-memory", "redis"])
def test_a_watcher_receives_what_the_pages_render(
    cast: Cast, layer: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Embedded mode (in-memory layer, server loop) and production (channels-redis): the change is
    published as ids, and the watching consumer renders exactly the page's header and row."""
    layers = IN_MEMORY if layer == "in-memory" else redis_layer(request.getfixturevalue("redis_url"))
    frozen = clock.now()
    monkeypatch.setattr(clock, "_now", lambda: frozen)
    viewer = headers_for(cast, "viewer")
    pushed: dict[str, str] = {}

    async def scenario() -> None:
        execution = await database_sync_to_async(running_execution)()
        detail, ok_detail = await connect(f"/ws/executions/{execution.pk}/", viewer)
        other, ok_other = await connect(f"/ws/executions/{execution.pk}/", viewer)  # a second browser
        listing, ok_list = await connect("/ws/executions/", viewer)
        assert ok_detail and ok_other and ok_list
        await database_sync_to_async(operator.stop)(Actor.console(cast["operator"]), execution.arn, "x")
        pushed["detail"] = await receive_until(detail, "STOPPED")
        pushed["other"] = await receive_until(other, "STOPPED")
        pushed["row"] = await receive_until(listing, "STOPPED")
        pushed["pk"] = str(execution.pk)
        for communicator in (detail, other, listing):
            await communicator.disconnect()

    with override_settings(CHANNEL_LAYERS=layers, DURABLE_LIVE_DEBOUNCE_SECONDS=0.05):
        run_async(scenario)
    execution = Execution.objects.select_related("function").get(pk=int(pushed["pk"]))
    assert pushed["detail"] == page_header(execution)
    assert pushed["other"] == pushed["detail"]
    assert pushed["row"] == render_to_string("executions/list.html#row", {"execution": execution})


@override_settings(CHANNEL_LAYERS=IN_MEMORY, DURABLE_LIVE_DEBOUNCE_SECONDS=0.05)
def test_a_refused_subscriber_receives_nothing(cast: Cast) -> None:
    execution = running_execution()

    approver, viewer = headers_for(cast, "approver"), headers_for(cast, "viewer")

    async def scenario() -> None:
        refused, connected = await connect(f"/ws/executions/{execution.pk}/", approver)
        assert not connected
        watcher, _ = await connect(f"/ws/executions/{execution.pk}/", viewer)
        await database_sync_to_async(operator.stop)(Actor.console(cast["admin"]), execution.arn, "x")
        assert "STOPPED" in await receive_until(watcher, "STOPPED")  # the creation push may come first
        assert await refused.receive_nothing(timeout=0.2)
        await watcher.disconnect()

    run_async(scenario)


def test_a_withdrawn_notice_sends_nothing(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sandbox child withdraws its invocation's notices when it ends (the worker announces it)."""
    withdrawn, sentinel = unused_ids(2)
    received: list[dict[str, Any]] = []

    async def scenario() -> None:
        layer = get_channel_layer()
        listing = await layer.new_channel()
        await layer.group_add(live.LIST_GROUP, listing)
        monkeypatch.setattr(live, "_instance", None)
        live.notify(withdrawn)
        live.withdraw(withdrawn)  # well inside the debounce window
        live.notify(sentinel)
        received.append(await asyncio.wait_for(layer.receive(listing), 5))

    with override_settings(CHANNEL_LAYERS=redis_layer(redis_url), DURABLE_LIVE_DEBOUNCE_SECONDS=0.5):
        run_async(scenario)
    assert received[0]["ids"] == [sentinel]
