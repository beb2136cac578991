"""The Celery app. Tasks are wake-up hints; the database decides what runs."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "durable_console.settings")

app = Celery("durable_console")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["executions"])
