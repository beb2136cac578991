"""Root URL configuration."""

from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.urls import include, path

from durable_console.health import healthz, readyz
from durable_console.login import ThrottledAdminAuthenticationForm, ThrottledAuthenticationForm
from executions.metrics import metrics_view

# Both login forms take passwords, so both are throttled (durable_console/login.py).
admin.site.login_form = ThrottledAdminAuthenticationForm

urlpatterns = [
    path("admin/", admin.site.urls),
    # Probes for load balancers and orchestrators, without login (durable_console/health.py).
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    # Prometheus, without login; DURABLE_METRICS=0 switches it off (executions/metrics.py).
    path("metrics", metrics_view, name="metrics"),
    # The Lambda-compatible API lives at the root, where AWS clients put its paths.
    path("", include("executions.api.urls")),
    # The approvals inbox and the signed e-mail link pages.
    path("approvals/", include("approvals.urls")),
    # The operations console: login (throttled; before Django's own, which it replaces),
    # logout, then home, executions, functions, audit, faults.
    path(
        "accounts/login/",
        LoginView.as_view(authentication_form=ThrottledAuthenticationForm),
        name="login",
    ),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("executions.console.urls")),
]
