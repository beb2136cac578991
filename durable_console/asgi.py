"""ASGI entry point: HTTP through Django; websockets join once the console lands."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "durable_console.settings")

application = get_asgi_application()
