"""Websocket consumers: thin. Permission in connect, then forward pre-rendered HTML.

Rendering happens once per change in ``executions.live.updates``; the consumers only
join a group and pass its fragments on.
"""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import async_to_sync
from channels.generic.websocket import WebsocketConsumer
from django.core.exceptions import PermissionDenied
from django.http import Http404

from executions.console.permissions import VIEW_EXECUTION, check, execution_get_for_user
from executions.live import updates as live


class _FragmentConsumer(WebsocketConsumer):
    group = ""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # The in-memory layer (embedded mode) can only be sent to on this loop.
        live.register_loop(asyncio.get_running_loop())
        await super().__call__(scope, receive, send)

    def group_for(self) -> str:
        """The group to join; raises PermissionDenied or Http404 to refuse."""
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

    def html_fragment(self, event: dict[str, Any]) -> None:
        self.send(text_data=event["html"])


class ExecutionConsumer(_FragmentConsumer):
    """One execution's detail page."""

    def group_for(self) -> str:
        execution = execution_get_for_user(self.scope["user"], self.scope["url_route"]["kwargs"]["pk"])
        return live.execution_group(execution.pk)


class ExecutionListConsumer(_FragmentConsumer):
    """The execution list and the home page: rows of every execution that changed."""

    def group_for(self) -> str:
        check(self.scope["user"], VIEW_EXECUTION)
        return live.LIST_GROUP
