"""The request type of console views, and the page-or-partial rendering they share."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def page_or_partial(
    request: HtmxHttpRequest, template: str, partial: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    """The whole page, or only the ``partial`` region when htmx asks (same template either way)."""
    name = f"{template}#{partial}" if request.htmx else template
    return render(request, name, context, status=status)
