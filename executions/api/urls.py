"""Routes of the Lambda-compatible API, mounted at the site root (docs/api.md, Operations).

ARNs and callback ids arrive percent-encoded and contain '/', ':', '$', '+'
and '='; the server decodes ``%2F`` to '/' before routing, so a label cannot
be a path segment. Routes anchor on the fixed suffix instead, and an ARN is
matched by its shape (exactly two segments after ``/durable-execution/``), so
``.../ID/history`` can never be read as an ARN ending in ``history``.
"""

from __future__ import annotations

from django.urls import re_path

from executions.api import views

ARN = r"(?P<arn>arn:[^/]+/durable-execution/[^/]+/[^/]+)"
EXECUTIONS = r"^2025-12-01/durable-executions/"
CALLBACKS = r"^2025-12-01/durable-execution-callbacks/(?P<callback_id>.+)/"
FUNCTION = r"(?P<function_name>[^/]+)"

urlpatterns = [
    re_path(r"^2015-03-31/functions/?$", views.ListFunctionsApi.as_view()),
    re_path(rf"^2015-03-31/functions/{FUNCTION}/invocations/?$", views.InvokeApi.as_view()),
    re_path(rf"^2015-03-31/functions/{FUNCTION}/?$", views.GetFunctionApi.as_view()),
    re_path(
        rf"^2025-12-01/functions/{FUNCTION}/durable-executions/?$",
        views.ListDurableExecutionsByFunctionApi.as_view(),
    ),
    re_path(rf"{EXECUTIONS}{ARN}/checkpoint$", views.CheckpointApi.as_view()),
    re_path(rf"{EXECUTIONS}{ARN}/state$", views.GetStateApi.as_view()),
    re_path(rf"{EXECUTIONS}{ARN}/history$", views.HistoryApi.as_view()),
    re_path(rf"{EXECUTIONS}{ARN}/stop$", views.StopApi.as_view()),
    re_path(rf"{EXECUTIONS}{ARN}/pause$", views.PauseApi.as_view()),
    re_path(rf"{EXECUTIONS}{ARN}/resume$", views.ResumeApi.as_view()),
    re_path(rf"{EXECUTIONS}{ARN}$", views.DurableExecutionApi.as_view()),
    re_path(rf"{EXECUTIONS}.*$", views.MalformedArnApi.as_view()),
    re_path(rf"{CALLBACKS}succeed$", views.CallbackSuccessApi.as_view()),
    re_path(rf"{CALLBACKS}fail$", views.CallbackFailureApi.as_view()),
    re_path(rf"{CALLBACKS}heartbeat$", views.CallbackHeartbeatApi.as_view()),
    re_path(r"^(2015-03-31|2025-12-01)/", views.UnknownOperationApi.as_view()),
]
