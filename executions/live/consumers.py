"""Websocket consumers: permission in connect, then render what their browser shows.

The processes that change executions publish only ids (``executions.live.updates``);
a consumer that receives ``executions.changed`` renders its fragment
(``executions.live.fragments``) and sends it. The consumers are synchronous: Channels
runs their handlers through ``database_sync_to_async``, on a thread, so the query and
the render never block the server's event loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.generic.websocket import WebsocketConsumer
from django.core.exceptions import PermissionDenied
from django.http import Http404

from executions.console.permissions import VIEW_EXECUTION, check, execution_get_for_user
from executions.live import fragments
from executions.live import updates as live

logger = logging.getLogger(__name__)


class _FragmentConsumer(WebsocketConsumer):
    group = ""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # The in-memory layer (embedded mode) can only be sent to on this loop.
        live.register_loop(asyncio.get_running_loop())
        await super().__call__(scope, receive, send)

    def group_for(self) -> str:
        """The group to join; raises PermissionDenied or Http404 to refuse."""
        raise NotImplementedError

    def fragment(self, ids: list[int], batch: str) -> str:
        """The HTML this consumer's browser needs after these executions changed."""
        raise NotImplementedError

    def connect(self) -> None:
        try:
            self.group = self.group_for()
        except (PermissionDenied, Http404):
            self.close()
            return
        async_to_sync(self.channel_layer.group_add)(self.group, self.channel_name)
        self.accept()

    def disconnect(self, code: int) -> None:
        if self.group:
            async_to_sync(self.channel_layer.group_discard)(self.group, self.channel_name)

    def executions_changed(self, event: dict[str, Any]) -> None:
        try:
            html = self.fragment([int(pk) for pk in event["ids"]], str(event["batch"]))
        except Exception:  # one lost update; the socket stays open for the next one
            logger.warning("live update for %s not rendered", self.group, exc_info=True)
            return
        if html:
            self.send(text_data=html)


class ExecutionConsumer(_FragmentConsumer):
    """One execution's detail page."""

    execution_id = 0

    def group_for(self) -> str:
        execution = execution_get_for_user(self.scope["user"], self.scope["url_route"]["kwargs"]["pk"])
        self.execution_id = execution.pk
        return live.execution_group(execution.pk)

    def fragment(self, ids: list[int], batch: str) -> str:
        if self.execution_id not in ids:
            return ""
        return fragments.execution_fragment(self.execution_id, batch)


class ExecutionListConsumer(_FragmentConsumer):
    """The execution list and the home page: rows of every execution that changed."""

    def group_for(self) -> str:
        check(self.scope["user"], VIEW_EXECUTION)
        return live.LIST_GROUP

    def fragment(self, ids: list[int], batch: str) -> str:
        return fragments.list_fragment(ids, batch)
