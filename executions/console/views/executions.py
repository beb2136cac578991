"""The execution list and the execution detail page, with the regions htmx and live updates fetch."""

from __future__ import annotations

import json
from typing import Any

from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import require_GET
from django_htmx.http import push_url

from executions.console.history_rows import history_rows_html
from executions.console.htmx import HtmxHttpRequest, page_or_partial
from executions.console.permissions import (
    COMPLETE_CALLBACK,
    OPERATE_EXECUTION,
    VIEW_EXECUTION,
    allowed,
    execution_get_for_user,
    require,
)
from executions.console.timeline import RowLinks, Timeline, build_timeline
from executions.console.timeline_window import (
    TOP,
    WINDOW,
    RowsUrl,
    TimelineState,
    expanded_items,
    failure_items,
    items_html,
    more_items,
    page_items,
    state_context,
)
from executions.engine import clock
from executions.models import Execution, HistoryEvent
from executions.queries import cache as console_cache
from executions.queries import console as cq
from executions.queries.current_step import attach_current_steps
from executions.queries.history import history_page, parse_int
from executions.vocabulary import ExecutionAction, OperationStatus, OperationType, allows

PAGE_SIZE = 50
DOWNLOADABLE = ("input", "result", "error")


@require_GET
@require(VIEW_EXECUTION)
def execution_list(request: HtmxHttpRequest) -> HttpResponse:
    filters, errors = cq.ExecutionFilters.from_query(request.GET)
    cursor = request.GET.get("cursor") or None
    page = cq.execution_page(filters, cursor=cursor, limit=PAGE_SIZE)
    attach_current_steps(page.rows)  # one query for the page's "Current step" column
    now = clock.now()
    counts, function_names = console_cache.cached_many(
        [cq.wanted_status_counts(filters), cq.wanted_function_names()], now=now
    )
    first_page = cursor is None or page.prev_cursor is None
    # Only the first page fetches itself again (a later page keeps its rows still).
    refetch = console_cache.refetch_context(
        (counts, function_names), now=now, counts_since=request.GET.get("counts_since")
    )
    context = {
        "filters": filters,
        "errors": errors,
        "page": page,
        "first_page": first_page,
        "chips": _chips(filters, counts.value),
        **(refetch if first_page else {"refresh_ms": None}),
        "functions": function_names.value,
        "can_operate": allowed(request.user, OPERATE_EXECUTION),
        "query": filters.to_query(),
    }
    response = page_or_partial(request, "executions/list.html", "results", context)
    if not request.htmx or request.htmx.trigger in (
        "execution-results",
        "execution-results-refresh",
        "status-chips-refresh",
    ):
        return response  # a page load, a live refresh or a refetch: the address is already right
    # After a filter change the address bar shows the canonical query (no empty form fields).
    canonical = filters.to_query(cursor=cursor) if cursor else context["query"]
    return push_url(response, f"{request.path}?{canonical}" if canonical else request.path)


def _chips(filters: cq.ExecutionFilters, counts: dict[str, int | str]) -> list[dict[str, Any]]:
    """One chip per status: its count under the other filters, and the link that filters by it."""
    chips = [
        {
            "status": "",
            "label": "All",
            "count": None,
            "pressed": not filters.statuses,
            "query": filters.to_query(statuses=()),
        }
    ]
    for status, label in cq.status_choices():
        chips.append(
            {
                "status": status,
                "label": label.replace("_", " ").title(),
                "count": counts.get(status, 0),
                "pressed": filters.statuses == (status,),
                "query": filters.to_query(statuses=(status,)),
            }
        )
    return chips


@require_GET
@gzip_page  # thousands of timeline rows compress ~15x
@require(VIEW_EXECUTION)
def execution_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    execution = execution_get_for_user(request.user, pk)
    return render(request, "executions/detail.html", _detail_context(request, execution))


@require_GET
@gzip_page
@require(VIEW_EXECUTION)
def execution_live(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The regions a change refreshes, as out-of-band swaps (fetched after a websocket push)."""
    execution = execution_get_for_user(request.user, pk)
    context = {**_detail_context(request, execution), "oob": True}
    return render(request, "executions/detail.html#live-response", context)


@require_GET
@require(VIEW_EXECUTION)
def execution_history(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The history region alone (a new type filter), or the next page of it (``after``: "more")."""
    execution = execution_get_for_user(request.user, pk)
    context = {"execution": execution, **_history(request, execution)}
    more = request.htmx and context["history"].after > 0
    return render(request, f"executions/detail.html#{'history-more' if more else 'history'}", context)


@require_GET
@require(VIEW_EXECUTION)
def execution_event(request: HtmxHttpRequest, pk: int, event_id: int) -> HttpResponse:
    """One history event's details (the history rows fetch them when opened)."""
    execution = execution_get_for_user(request.user, pk)
    event = get_object_or_404(HistoryEvent, execution=execution, event_id=event_id)
    return render(request, "executions/detail.html#event-details", {"execution": execution, "event": event})


@require_GET
@gzip_page
@require(VIEW_EXECUTION)
def execution_timeline_rows(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Timeline rows fetched on demand: a folded context's (``parent``), or the next siblings
    after the first ``skip`` under ``parent`` (a "more" row; ``-`` for the top level); with
    ``failures``, the rows "Failures only" shows, rendered on the page or not."""
    execution = execution_get_for_user(request.user, pk)
    data = cq.execution_detail_data(execution)
    timeline = build_timeline(data, clock.now())
    state = TimelineState.from_query(request.GET)
    parent = request.GET.get("parent", "")
    skip = parse_int(request.GET.get("skip"))
    if request.GET.get("failures"):
        return _failure_rows(request, execution, data, timeline, parent or TOP, skip)
    if skip:
        items = more_items(data, timeline, state, parent, skip)
        state = state.showing(parent, skip + WINDOW)
    else:
        items = expanded_items(data, timeline, state, parent)
        state = state.opened(parent)
    rows_url = RowsUrl.for_execution(execution.pk)
    can_complete = allowed(request.user, COMPLETE_CALLBACK) and not execution.is_terminal
    links = RowLinks.for_execution(execution, can_complete=can_complete)
    context = {
        "execution": execution,
        "timeline_rows": items_html(items, links, rows_url, timeline),
        **state_context(state, rows_url),
    }
    return render(request, "executions/detail.html#timeline-rows-response", context)


def _failure_rows(
    request: HtmxHttpRequest,
    execution: Execution,
    data: cq.DetailData,
    timeline: Timeline,
    parent: str,
    skip: int,
) -> HttpResponse:
    """The failures-only view's rows (timeline_window.failure_items); "No operation failed." if none."""
    can_complete = allowed(request.user, COMPLETE_CALLBACK) and not execution.is_terminal
    links = RowLinks.for_execution(execution, can_complete=can_complete)
    items = failure_items(data, timeline, parent, skip)
    context = {
        "execution": execution,
        "timeline_rows": items_html(items, links, RowsUrl.for_execution(execution.pk), timeline),
        "no_failures": not items and parent == TOP and not skip,
    }
    return render(request, "executions/detail.html#timeline-failure-rows", context)


def _history(request: HtmxHttpRequest, execution: Execution) -> dict[str, Any]:
    """A page of history (``type``, ``after``, ``pages``: see ``history_page``) and its rows."""
    history = history_page(
        execution,
        event_type=request.GET.get("type", ""),
        after=parse_int(request.GET.get("after")),
        pages=parse_int(request.GET.get("pages"), 1),
    )
    return {"history": history, "history_rows": history_rows_html(history, execution)}


def _detail_context(request: HtmxHttpRequest, execution: Execution) -> dict[str, Any]:
    data = cq.execution_detail_data(execution)
    user, now = request.user, clock.now()
    timeline = build_timeline(data, now)
    can_complete = allowed(user, COMPLETE_CALLBACK) and not execution.is_terminal
    # Only expanded rows, a window of siblings at a time (timeline_window.py); what the
    # reader opened comes back with live refreshes.
    state = TimelineState.from_query(request.GET)
    rows_url = RowsUrl.for_execution(execution.pk)
    links = RowLinks.for_execution(execution, can_complete=can_complete)
    return {
        "execution": execution,
        "data": data,
        "timeline": timeline,
        "timeline_rows": items_html(page_items(data, timeline, state), links, rows_url, timeline),
        **state_context(state, rows_url),
        **_history(request, execution),
        "invocations": timeline.invocations,  # the newest ones, with their outcome styles
        # (operation, its own name): wait_for_callback's CALLBACK is "<name> create callback id" to the SDK.
        "pending_callbacks": [(row.op, row.label) for row in timeline.rows if _is_pending_callback(row.op)],
        "can_operate": allowed(user, OPERATE_EXECUTION),
        "can_complete": can_complete,
        "actions": _available_actions(execution) if allowed(user, OPERATE_EXECUTION) else set(),
        "now": now,
    }


def _is_pending_callback(op: Any) -> bool:
    return op.type == OperationType.CALLBACK and op.status == OperationStatus.STARTED


def _available_actions(execution: Execution) -> set[str]:
    """Which operator actions the execution's state allows (the services check again)."""
    offered = (
        ExecutionAction.RERUN,
        ExecutionAction.STOP,
        ExecutionAction.PAUSE,
        ExecutionAction.RESUME,
        ExecutionAction.REDRIVE,
    )
    return {str(action) for action in offered if allows(execution.status, action)}


@require_GET
@require(VIEW_EXECUTION)
def execution_download(request: HtmxHttpRequest, pk: int, part: str) -> HttpResponse:
    """The input, result or error as a JSON file (viewers show at most a preview of big payloads)."""
    execution = execution_get_for_user(request.user, pk)
    if part not in DOWNLOADABLE:
        raise Http404("Nothing to download")
    value = {"input": execution.input_payload, "result": execution.result, "error": execution.error}[part]
    body = value if isinstance(value, str) else json.dumps(value, indent=2)
    response = HttpResponse(body or "", content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{execution.name}-{part}.json"'
    return response
