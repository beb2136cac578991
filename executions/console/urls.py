"""Console routes, mounted at the site root (the Lambda API's paths start with a date)."""

from __future__ import annotations

from django.urls import path

from executions.console.views import (
    actions,
    audit,
    bulk,
    diffs,
    executions,
    faults,
    functions,
    home,
    operations,
)
from executions.console.views import administration as admin_pages

app_name = "console"

EXECUTION = "executions/<int:pk>/"

urlpatterns = [
    path("", home.home, name="home"),
    path("executions/", executions.execution_list, name="execution-list"),
    path("executions/bulk/", bulk.bulk_confirm, name="bulk"),
    path("executions/bulk/<int:pk>/", bulk.bulk_job, name="bulk-job"),
    path(EXECUTION, executions.execution_detail, name="execution-detail"),
    path(EXECUTION + "live/", executions.execution_live, name="execution-live"),
    path(EXECUTION + "history/", executions.execution_history, name="execution-history"),
    path(EXECUTION + "history/<int:event_id>/", executions.execution_event, name="execution-event"),
    path(EXECUTION + "timeline/rows/", executions.execution_timeline_rows, name="execution-timeline-rows"),
    path(EXECUTION + "download/<str:part>/", executions.execution_download, name="execution-download"),
    path(EXECUTION + "stop/", actions.execution_stop, name="execution-stop"),
    path(EXECUTION + "pause/", actions.execution_pause, name="execution-pause"),
    path(EXECUTION + "resume/", actions.execution_resume, name="execution-resume"),
    path(EXECUTION + "redrive/", actions.execution_redrive, name="execution-redrive"),
    path(EXECUTION + "rerun/", actions.execution_rerun, name="execution-rerun"),
    path(EXECUTION + "callbacks/<str:operation_id>/", actions.callback_complete, name="callback-complete"),
    path(EXECUTION + "steps/<str:operation_id>/attempts/", diffs.step_attempts, name="step-attempts"),
    path(EXECUTION + "operations/<str:operation_id>/", operations.operation_detail, name="operation-detail"),
    path(EXECUTION + "compare/", diffs.compare, name="execution-compare"),
    path("functions/", functions.function_list, name="function-list"),
    path("functions/new/", functions.function_create, name="function-create"),
    path("functions/<str:name>/", functions.function_detail, name="function-detail"),
    path("functions/<str:name>/edit/", functions.function_edit, name="function-edit"),
    path("functions/<str:name>/enable/", functions.function_enable, name="function-enable"),
    path("functions/<str:name>/disable/", functions.function_disable, name="function-disable"),
    path("functions/<str:name>/start/", functions.function_start, name="function-start"),
    path("audit/", audit.audit_log, name="audit"),
    path("faults/", faults.faults, name="faults"),
    path("faults/switch/", faults.fault_switch, name="fault-switch"),
    # Admin pages (users, API keys): the admins group only.
    path("users/", admin_pages.user_list, name="user-list"),
    path("users/new/", admin_pages.user_create, name="user-create"),
    path("users/<int:pk>/", admin_pages.user_detail, name="user-detail"),
    path("users/<int:pk>/groups/", admin_pages.user_groups, name="user-groups"),
    path("users/<int:pk>/active/", admin_pages.user_active, name="user-active"),
    path("api-keys/", admin_pages.key_list, name="key-list"),
    path("api-keys/new/", admin_pages.key_create, name="key-create"),
    path("api-keys/<int:pk>/revoke/", admin_pages.key_revoke, name="key-revoke"),
]
