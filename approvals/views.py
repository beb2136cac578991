"""Approvals pages: the inbox (logged in) and the e-mail link pages (signed links, no login).

Views are thin: the accessor in ``selectors`` decides what the user may see,
a service in ``services`` changes state, and one template per screen renders
(its partials answer htmx requests and the inbox's polling).
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import trigger_client_event

from approvals import selectors, services
from approvals.errors import AlreadyDecided, ApprovalError, LinkInvalid, LinkUsed, RequestExpired
from approvals.forms import DecisionForm
from approvals.models import Outcome, RequestStatus
from approvals.selectors import TABS, InboxQuery, InboxScope, RequestDetail
from executions.engine import clock

PAGE = "approvals/inbox.html"
LINK_PAGE = "approvals/link.html"
POLL_SECONDS = 4
CHANGED_EVENT = "approvals-changed"
FILTERS = "approval-filters"  # the id of the search form


def _query(request: HttpRequest) -> InboxQuery:
    """The list's tab, search and order: from the query string, or a decision's form fields."""
    source = request.POST if request.method == "POST" else request.GET
    return InboxQuery.parse(source.get("tab", "assigned"), source.get("q", ""), source.get("sort", ""))


def _open_id(request: HttpRequest) -> int | None:
    value = request.GET.get("open", "")
    return int(value) if value.isdigit() else None


def _list_context(scope: InboxScope, query: InboxQuery, open_id: int | None) -> dict[str, Any]:
    now = clock.now()
    rows = selectors.inbox_rows(scope, query, now)
    counts = selectors.tab_counts(scope, now, query.q)
    fingerprint = repr(
        (
            query,
            counts,
            [(r.request.pk, r.state, r.approvals, int(r.seconds_left // 60), r.voted) for r in rows],
        )
    )
    return {
        "scope": scope,
        "query": query,
        "tab": query.tab,
        "tab_items": [(name, counts[name], query.with_tab(name).url) for name in TABS],
        "rows": rows,
        "open_id": open_id,
        "version": hashlib.sha256(fingerprint.encode()).hexdigest()[:16],
        "poll_seconds": POLL_SECONDS,
    }


def _detail(scope: InboxScope, pk: int) -> RequestDetail:
    request = selectors.request_get_for_user(scope, pk)
    return selectors.request_detail(scope, request, clock.now())


@require_GET
@login_required
def inbox(request: HttpRequest) -> HttpResponse:
    scope = selectors.inbox_scope(request.user)
    return render(request, PAGE, _list_context(scope, _query(request), None))


@require_GET
@login_required
def inbox_list(request: HttpRequest) -> HttpResponse:
    """The polled (and searched) list: 204, leaving the page alone, unless something changed."""
    scope = selectors.inbox_scope(request.user)
    query = _query(request)
    context = _list_context(scope, query, _open_id(request))
    if request.GET.get("v") == context["version"]:
        return HttpResponse(status=204)
    if context["open_id"] is not None:
        try:
            context["detail"] = _detail(scope, context["open_id"])
        except Http404:  # gone or no longer visible: the list update alone is enough
            context["open_id"] = None
    response = render(request, f"{PAGE}#list-update", context)
    if request.htmx and request.htmx.trigger == FILTERS:
        # A new search or order: the address shows it (so a reload or a shared link does too).
        open_id = context["open_id"]
        response["HX-Replace-Url"] = query.detail_url(open_id) if open_id is not None else query.url
    return response


@require_GET
@login_required
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    scope = selectors.inbox_scope(request.user)
    found = _detail(scope, pk)
    query = _query(request).with_tab(found.tab)
    context = {"scope": scope, "query": query, "detail": found, "form": DecisionForm()}
    if request.htmx and not request.htmx.history_restore_request:  # a restore wants the whole page
        return render(request, f"{PAGE}#detail", context)
    return render(request, PAGE, {**_list_context(scope, query, pk), **context})


@require_POST
@login_required
def decide(request: HttpRequest, pk: int) -> HttpResponse:
    scope = selectors.inbox_scope(request.user)
    selectors.request_get_for_user(scope, pk)  # 404 before anything else for invisible requests
    query = _query(request).with_tab("assigned")  # the list the next request comes from
    form = DecisionForm(request.POST)
    error = ""
    if form.is_valid():
        waiting = selectors.waiting_ids(scope, query, clock.now())
        try:
            services.approval_decide(request_id=pk, reviewer=request.user, **form.cleaned_data)
        except ApprovalError as refused:
            error = refused.message
        else:
            return _decided(request, scope, query, pk, waiting)
    found = _detail(scope, pk)
    context = {
        "scope": scope,
        "query": query.with_tab(found.tab),
        "detail": found,
        "form": form,
        "error": error,
    }
    if request.htmx:
        return trigger_client_event(render(request, f"{PAGE}#detail", context), CHANGED_EVENT, after="settle")
    page = {**_list_context(scope, context["query"], pk), **context}
    return render(request, PAGE, page, status=409 if error else 400)


def _decided(
    request: HttpRequest, scope: InboxScope, query: InboxQuery, pk: int, waiting: list[int]
) -> HttpResponse:
    """The next waiting request opens (the one below in the list), with word of the decision."""
    done = _detail(scope, pk)
    next_id = selectors.next_waiting(scope, query, clock.now(), waiting, pk)
    shown = _detail(scope, next_id) if next_id is not None else done
    text = _decided_text(done, next_id is not None)
    if request.htmx:
        context = {
            "scope": scope,
            "query": query,
            "detail": shown,
            "form": DecisionForm(),
            "decided_text": text,
        }
        response = render(request, f"{PAGE}#detail", context)
        response["HX-Replace-Url"] = query.detail_url(shown.request.pk)
        # After the settle: by then approvals.js has pointed the list at the request shown.
        return trigger_client_event(response, CHANGED_EVENT, after="settle")
    messages.success(request, text)
    return redirect(query.detail_url(shown.request.pk))


def _decided_text(done: RequestDetail, has_next: bool) -> str:
    verb = "approved" if done.own_decision and done.own_decision.outcome == Outcome.APPROVE else "rejected"
    waiting = " It is waiting for other reviewers." if done.state == RequestStatus.PENDING else ""
    after = " Here is the next request." if has_next else " Nothing else is waiting for you."
    return f"You {verb} “{done.request.title}”.{waiting}{after}"


# --- signed e-mail links (no login: the signature is the credential) ---------------------------


@require_http_methods(["GET", "POST"])
def verify_link(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows what the link will do; only the POST (a person's click) confirms."""
    if request.method == "POST":
        try:
            verification = services.verification_confirm(token=token)
        except ApprovalError as refused:
            return _link_refused(request, "verify", refused)
        return render(request, LINK_PAGE, {"kind": "verify", "state": "done", "verification": verification})
    page = selectors.verification_link_page(token)
    return _link_page(request, "verify", page)


@require_http_methods(["GET", "POST"])
def review_link(request: HttpRequest, token: str) -> HttpResponse:
    """A reviewer deciding from their notification e-mail; recorded with channel "email"."""
    page = selectors.review_link_page(token)
    if request.method != "POST" or page.state != "valid":
        return _link_page(request, "review", page, DecisionForm())
    form = DecisionForm(request.POST)
    if not form.is_valid():
        return _link_page(request, "review", page, form, status=400)
    try:
        decision = services.approval_decide_by_link(token=token, **form.cleaned_data)
    except ApprovalError as refused:
        return _link_refused(request, "review", refused)
    fresh = selectors.review_link_page(token)
    context = {"kind": "review", "state": "done", "decision": decision, "detail": fresh.detail}
    return render(request, LINK_PAGE, context)


_STATUS = {"valid": 200, "invalid": 400, "used": 410, "expired": 410, "decided": 409, "refused": 403}


def _link_page(
    request: HttpRequest,
    kind: str,
    page: selectors.LinkPage,
    form: DecisionForm | None = None,
    status: int = 0,
) -> HttpResponse:
    context = {"kind": kind, "state": page.state, "message": page.message, "page": page, "form": form}
    return render(request, LINK_PAGE, context, status=status or _STATUS[page.state])


def _link_refused(request: HttpRequest, kind: str, refused: ApprovalError) -> HttpResponse:
    states = {LinkInvalid: "invalid", LinkUsed: "used", RequestExpired: "expired", AlreadyDecided: "decided"}
    state = states.get(type(refused), "refused")
    context = {"kind": kind, "state": state, "message": refused.message}
    return render(request, LINK_PAGE, context, status=_STATUS[state])
