"""Websocket routes of the console."""

from __future__ import annotations

from django.urls import path

from executions.live import consumers

websocket_urlpatterns = [
    path("ws/executions/", consumers.ExecutionListConsumer.as_asgi()),
    path("ws/executions/<int:pk>/", consumers.ExecutionConsumer.as_asgi()),
]
