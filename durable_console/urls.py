"""Root URL configuration."""

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    # The Lambda-compatible API lives at the root, where AWS clients put its paths.
    path("", include("executions.api.urls")),
    # The approvals inbox and the signed e-mail link pages.
    path("approvals/", include("approvals.urls")),
    # The operations console: login/logout, then home, executions, functions, audit, faults.
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("executions.console.urls")),
]
