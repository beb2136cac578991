"""Reading approvals: who sees which requests, the inbox tabs, and decisions for the timeline.

Every view goes through ``inbox_scope`` and ``request_get_for_user``, so the
visibility rule lives here only: approvers see
the requests that name them or one of their groups; operators and admins
(``view_all_requests``) see all; anyone else sees none.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlencode

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import F, Prefetch, Q
from django.db.models.expressions import OrderBy
from django.db.models.functions import Coalesce
from django.http import Http404
from django.urls import NoReverseMatch, reverse

from approvals import links
from approvals.errors import AlreadyDecided, LinkInvalid, LinkUsed
from approvals.models import (
    ApprovalRequest,
    ApprovalRequestQuerySet,
    Decision,
    EmailVerification,
    Outcome,
    RequestStatus,
)
from approvals.services import may_decide, notification_for_link
from executions.engine import clock
from executions.models import AuditChannel, AuditEntry, Operation
from executions.vocabulary import OperationStatus

USE_INBOX = "approvals.use_inbox"
VIEW_ALL = "approvals.view_all_requests"
VIEW_EXECUTION = "executions.view_execution"

TABS = ("assigned", "decided", "expired")
TAB_LIMIT = 200

# A request whose callback was completed outside the approvals app (by hand in the console,
# through the API or the CLI): not decided here, but not expired either. The stored status stays
# pending (or expired, once someone tried to decide it), so the state is derived from the callback.
COMPLETED = "completed"
CALLBACK_DONE = (OperationStatus.SUCCEEDED, OperationStatus.FAILED)
DECIDED_HERE = (RequestStatus.APPROVED, RequestStatus.REJECTED)
COMPLETED_OUTSIDE = Q(operation__status__in=CALLBACK_DONE) & ~Q(status__in=DECIDED_HERE)
# The audit actions of those completions; each entry names its execution (target) and operation.
CALLBACK_ACTIONS = ("callback.succeed", "callback.fail")

User = AbstractBaseUser | AnonymousUser


@dataclass(frozen=True)
class InboxScope:
    """What the current user may see in the inbox."""

    user: AbstractBaseUser
    sees_all: bool
    may_view_executions: bool


def inbox_scope(user: User) -> InboxScope:
    """The user's scope; PermissionDenied for users who have no inbox at all."""
    if not user.is_authenticated or not (user.has_perm(USE_INBOX) or user.has_perm(VIEW_ALL)):
        raise PermissionDenied
    return InboxScope(
        user=user,  # type: ignore[arg-type]
        sees_all=user.has_perm(VIEW_ALL),
        may_view_executions=user.has_perm(VIEW_EXECUTION),
    )


def visible_requests(scope: InboxScope) -> ApprovalRequestQuerySet:
    requests = ApprovalRequest.objects.select_related("execution__function", "operation")
    return requests if scope.sees_all else requests.assigned_to(scope.user)


def request_get_for_user(scope: InboxScope, pk: int) -> ApprovalRequest:
    """The request if the user may see it; Http404 otherwise (not even whether it exists)."""
    request = visible_requests(scope).filter(pk=pk).first()
    if request is None:
        raise Http404("No such approval request")
    return request


# --- the inbox --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sort:
    key: str
    label: str
    order: tuple[str | OrderBy, ...]


# When a request was settled: decided here, or its callback completed outside (the operation's end).
_SETTLED_AT = Coalesce(F("decided_at"), F("operation__ended_at")).desc(nulls_first=True)
_OLDEST = Sort("oldest", "Oldest first", ("created_at", "id"))
_NEWEST = Sort("newest", "Newest first", ("-created_at", "-id"))
# Per tab, the first is the default: what needs attention first, then the two by age.
TAB_SORTS: dict[str, tuple[Sort, ...]] = {
    "assigned": (Sort("time-left", "Least time left", ("expires_at", "id")), _OLDEST, _NEWEST),
    "decided": (Sort("recent", "Recently decided", (_SETTLED_AT, "-created_at", "-id")), _OLDEST, _NEWEST),
    "expired": (Sort("recent", "Recently expired", ("-expires_at", "-id")), _OLDEST, _NEWEST),
}
MAX_SEARCH_WORDS = 8
_SEARCHED = ("title__icontains", "summary__icontains", "execution__name__icontains")
_SEARCHED_FUNCTION = "execution__function__name__icontains"


@dataclass(frozen=True)
class InboxQuery:
    """Which list the inbox shows: a tab, a search and an order (all from the query string)."""

    tab: str = "assigned"
    q: str = ""
    sort: str = ""

    @classmethod
    def parse(cls, tab: str, q: str = "", sort: str = "") -> InboxQuery:
        """Unknown tabs and sorts fall back to the defaults; the search is trimmed."""
        tab = tab if tab in TABS else "assigned"
        sort = sort if any(s.key == sort for s in TAB_SORTS[tab]) else TAB_SORTS[tab][0].key
        return cls(tab=tab, q=" ".join(q.split())[:200], sort=sort)

    @property
    def sorts(self) -> tuple[Sort, ...]:
        return TAB_SORTS[self.tab]

    @property
    def order(self) -> tuple[str | OrderBy, ...]:
        return next((s.order for s in self.sorts if s.key == self.sort), self.sorts[0].order)

    def with_tab(self, tab: str) -> InboxQuery:
        return InboxQuery.parse(tab, self.q, self.sort)

    def params(self, *, tab: bool = True) -> str:
        """The query string that shows this list again (defaults left out)."""
        values = {"tab": self.tab} if tab and self.tab != "assigned" else {}
        if self.q:
            values["q"] = self.q
        if self.sort != self.sorts[0].key:
            values["sort"] = self.sort
        return urlencode(values)

    @property
    def url(self) -> str:
        params = self.params()
        return reverse("approvals:inbox") + (f"?{params}" if params else "")

    def detail_url(self, pk: int) -> str:
        """A request's page that keeps this search and order (a reload shows the same list)."""
        params = self.params(tab=False)
        return reverse("approvals:detail", args=[pk]) + (f"?{params}" if params else "")


def _matching(requests: ApprovalRequestQuerySet, q: str) -> ApprovalRequestQuerySet:
    """Every word somewhere in the title, summary, execution name or function name."""
    for word in q.split()[:MAX_SEARCH_WORDS]:
        anywhere = Q(**{_SEARCHED_FUNCTION: word})
        for lookup in _SEARCHED:
            anywhere |= Q(**{lookup: word})
        requests = requests.filter(anywhere)
    return requests


def tab_requests(
    scope: InboxScope, tab: str, now: datetime.datetime, q: str = "", sort: str = ""
) -> ApprovalRequestQuerySet:
    """Assigned: open and not yet answered by me. Decided: settled (here, or its callback
    completed outside the inbox), or answered by me and waiting for others. Expired: can no
    longer be decided and was not. Filtered by the search ``q`` and ordered by ``sort`` (see
    TAB_SORTS), both in the one query."""
    query = InboxQuery.parse(tab, q, sort)
    requests = _matching(visible_requests(scope).with_vote_by(scope.user), query.q)
    if query.tab == "assigned":
        chosen = requests.open(now).filter(voted=False)
    elif query.tab == "decided":
        chosen = (
            requests.decided() | requests.open(now).filter(voted=True) | requests.filter(COMPLETED_OUTSIDE)
        )
    else:
        # The row's own "expired" covers a completed callback too: that is not a lapse.
        chosen = requests.expired(now).filter(
            Q(operation__isnull=True) | ~Q(operation__status__in=CALLBACK_DONE)
        )
    return chosen.order_by(*query.order)


def tab_counts(scope: InboxScope, now: datetime.datetime, q: str = "") -> dict[str, int]:
    return {tab: tab_requests(scope, tab, now, q).count() for tab in TABS}


def completed_outside(request: ApprovalRequest) -> bool:
    """Whether the request's callback was completed outside the inbox (COMPLETED_OUTSIDE, in Python)."""
    operation = request.operation
    return request.status not in DECIDED_HERE and operation is not None and operation.status in CALLBACK_DONE


def request_state(request: ApprovalRequest, now: datetime.datetime) -> str:
    """``request.state(now)``, or COMPLETED when its callback was completed outside the inbox."""
    return COMPLETED if completed_outside(request) else request.state(now)


@dataclass(frozen=True)
class OutsideCompletion:
    """How a request's callback was completed outside the inbox, and by whom (the audit log)."""

    succeeded: bool
    actor: str = ""  # "" when no audit entry says (the services called directly)
    channel: str = ""
    at: datetime.datetime | None = None

    @property
    def by(self) -> str:
        """ "by oscar (console)", "through the API by AKIA…", or "" """
        if not self.actor:
            return ""
        if self.channel == AuditChannel.API:  # a key's call, not a person's click
            return f"through the API by {self.actor}"
        return f"by {self.actor} ({self.channel})"

    @property
    def text(self) -> str:
        """ "completed outside the inbox by oscar (console)" """
        return " ".join(part for part in ("completed outside the inbox", self.by) if part)


def outside_completions(requests: Iterable[ApprovalRequest]) -> dict[int, OutsideCompletion]:
    """Request pk -> how its callback was completed, for those completed outside the inbox.

    One query (none when there are none), on the audit log's target index: each completion's
    entry names the execution's ARN and the callback's operation id (``executions.operator``).
    """
    done = [r for r in requests if completed_outside(r)]
    if not done:
        return {}
    entries = AuditEntry.objects.filter(
        target__in={r.execution.arn for r in done}, action__in=CALLBACK_ACTIONS
    ).only("target", "action", "actor_name", "channel", "details", "created_at")
    latest = {
        (entry.target, (entry.details or {}).get("operation")): entry
        for entry in entries.order_by("created_at", "id")
    }
    found: dict[int, OutsideCompletion] = {}
    for request in done:
        assert request.operation is not None  # for mypy: chosen above
        succeeded = request.operation.status == OperationStatus.SUCCEEDED
        entry = latest.get((request.execution.arn, request.operation.operation_id))
        found[request.pk] = (
            OutsideCompletion(succeeded, entry.actor_name, entry.channel, entry.created_at)
            if entry is not None
            else OutsideCompletion(succeeded, at=request.operation.ended_at)
        )
    return found


@dataclass(frozen=True)
class InboxRow:
    request: ApprovalRequest
    state: str
    approvals: int
    seconds_left: float
    voted: bool
    completion: OutsideCompletion | None = None  # for a request completed outside the inbox


def inbox_rows(scope: InboxScope, query: InboxQuery, now: datetime.datetime) -> list[InboxRow]:
    requests = list(tab_requests(scope, query.tab, now, query.q, query.sort)[:TAB_LIMIT])
    approvals = _approval_counts(r.pk for r in requests)
    completions = outside_completions(requests)
    return [
        InboxRow(
            request=r,
            state=request_state(r, now),
            approvals=approvals.get(r.pk, 0),
            seconds_left=(r.expires_at - now).total_seconds(),
            voted=bool(getattr(r, "voted", False)),
            completion=completions.get(r.pk),
        )
        for r in requests
    ]


def _approval_counts(request_ids: Iterable[int]) -> dict[int, int]:
    counts: dict[int, int] = {}
    approving = Decision.objects.filter(request_id__in=list(request_ids), outcome=Outcome.APPROVE)
    for request_id in approving.values_list("request_id", flat=True):
        counts[request_id] = counts.get(request_id, 0) + 1
    return counts


def waiting_ids(scope: InboxScope, query: InboxQuery, now: datetime.datetime) -> list[int]:
    """The pks of the user's assigned tab, searched and ordered as the list shows them."""
    waiting = tab_requests(scope, "assigned", now, query.q, query.sort)
    return list(waiting.values_list("pk", flat=True)[:TAB_LIMIT])


def next_waiting(
    scope: InboxScope, query: InboxQuery, now: datetime.datetime, before: list[int], decided: int
) -> int | None:
    """The request to open after deciding ``decided``: the one that followed it in the list
    (``before``, read before the decision), else the one before it, else the list's first."""
    after = [pk for pk in waiting_ids(scope, query, now) if pk != decided]
    still = set(after)
    at = before.index(decided) if decided in before else len(before)
    candidates = before[at + 1 :] + before[:at][::-1]
    return next((pk for pk in candidates if pk in still), after[0] if after else None)


def tab_for(request: ApprovalRequest, state: str, voted: bool) -> str:
    """The tab a request shows up in, for the current user (a completed one is settled: decided)."""
    if state == RequestStatus.EXPIRED:
        return "expired"
    return "decided" if state != RequestStatus.PENDING or voted else "assigned"


# --- one request --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestDetail:
    request: ApprovalRequest
    state: str
    lapsed_reason: str
    reviewers: list[str]
    decisions: list[Decision]
    approvals: int
    seconds_left: float
    execution_url: str
    own_decision: Decision | None
    # Why this user cannot decide now ("" when they can).
    cannot_decide: str
    tab: str
    completion: OutsideCompletion | None = None  # for a request completed outside the inbox


def request_detail(scope: InboxScope, request: ApprovalRequest, now: datetime.datetime) -> RequestDetail:
    decisions = list(request.decisions.all())
    own = next((d for d in decisions if d.reviewer_id == scope.user.pk), None)
    state = request_state(request, now)
    return RequestDetail(
        request=request,
        state=state,
        lapsed_reason=request.lapsed_reason(now) if state == RequestStatus.EXPIRED else "",
        reviewers=[reviewer.name for reviewer in request.reviewers.all()],
        decisions=decisions,
        approvals=sum(1 for d in decisions if d.outcome == Outcome.APPROVE),
        seconds_left=(request.expires_at - now).total_seconds(),
        execution_url=execution_url(request.execution_id) if scope.may_view_executions else "",
        own_decision=own,
        cannot_decide=_cannot_decide(request, scope.user, state, own),
        tab=tab_for(request, state, own is not None),
        completion=outside_completions([request]).get(request.pk),
    )


def _cannot_decide(request: ApprovalRequest, user: AbstractBaseUser, state: str, own: Decision | None) -> str:
    if state == RequestStatus.EXPIRED:
        return "This request can no longer be decided."
    if state == COMPLETED:
        return "Its callback was completed outside the inbox, so this request can no longer be decided."
    if state != RequestStatus.PENDING:
        return AlreadyDecided(state, request.decided_by_name).message
    if own is not None:
        return "You have decided; waiting for other reviewers."
    if not request.allow_self_approval and request.execution.started_by_id == user.pk:
        return "You started this execution, so someone else has to decide on it."
    if not may_decide(request, user):
        return "You are not one of the reviewers of this request."
    return ""


def execution_url(execution_id: int) -> str:
    """The console's page for the execution ("" if the console is not installed)."""
    try:
        return reverse("console:execution-detail", args=[execution_id])
    except NoReverseMatch:
        return ""


# --- the execution timeline ----------------------------------------------------------------------


@dataclass(frozen=True)
class DecisionEntry:
    """One reviewer's answer, for display."""

    reviewer: str
    outcome: str  # "approve" | "reject"
    channel: str  # "inbox" | "email"
    channel_label: str  # "Inbox" | "E-mail link"
    comment: str
    decided_at: datetime.datetime


@dataclass(frozen=True)
class DecisionSummary:
    """What the approvals app knows about one CALLBACK operation.

    ``kind`` is "approval" or "email-verification". ``status``: pending,
    approved, rejected, expired (approvals); pending, confirmed, expired
    (verifications). ``decided_by``/``decided_at``/``channel``/``comment`` are
    those of the decision that settled it ("" / None while undecided; for a
    confirmed verification, the address and "email").
    """

    kind: str
    request_id: int
    status: str
    title: str
    decided_by: str
    decided_at: datetime.datetime | None
    channel: str
    comment: str
    approvals: int
    required: int
    entries: tuple[DecisionEntry, ...]
    url: str  # the inbox page of the request ("" for verifications)
    note: str  # why it expired, or ""


def decisions_for_operations(operations: Iterable[Operation | int]) -> dict[int, DecisionSummary]:
    """Decision summaries keyed by Operation pk, for the CALLBACK operations that have one.

    Two queries (plus one for decisions), whatever the number of operations.
    Takes Operation instances or their pks; operations without a request or a
    verification are simply absent from the result.
    """
    pks = [op if isinstance(op, int) else op.pk for op in operations]
    if not pks:
        return {}
    now = clock.now()
    summaries: dict[int, DecisionSummary] = {}
    requests = (
        ApprovalRequest.objects.filter(operation_id__in=pks)
        .select_related("execution", "operation")
        .prefetch_related(Prefetch("decisions", queryset=Decision.objects.order_by("decided_at", "id")))
    )
    for request in requests:
        summaries[request.operation_id] = _request_summary(request, now)
    verifications = EmailVerification.objects.filter(operation_id__in=pks).select_related(
        "execution", "operation"
    )
    for verification in verifications:
        summaries[verification.operation_id] = _verification_summary(verification, now)
    return summaries


def _request_summary(request: ApprovalRequest, now: datetime.datetime) -> DecisionSummary:
    entries = tuple(
        DecisionEntry(
            reviewer=d.reviewer_name,
            outcome=d.outcome,
            channel=d.channel,
            channel_label=d.get_channel_display(),
            comment=d.comment,
            decided_at=d.decided_at,
        )
        for d in request.decisions.all()
    )
    state = request_state(request, now)
    settling = next((e for e in reversed(entries) if e.reviewer == request.decided_by_name), None)
    settled = state in (RequestStatus.APPROVED, RequestStatus.REJECTED) and settling is not None
    return DecisionSummary(
        kind="approval",
        request_id=request.pk,
        status=state,
        title=request.title,
        decided_by=request.decided_by_name if settled else "",
        decided_at=request.decided_at if settled else None,
        channel=settling.channel if settled else "",
        comment=settling.comment if settled else "",
        approvals=sum(1 for e in entries if e.outcome == Outcome.APPROVE),
        required=request.required,
        entries=entries,
        url=reverse("approvals:detail", args=[request.pk]),
        note=request.lapsed_reason(now) if state == RequestStatus.EXPIRED else "",
    )


def _verification_summary(verification: EmailVerification, now: datetime.datetime) -> DecisionSummary:
    state = verification.state(now)
    confirmed = verification.confirmed_at is not None
    return DecisionSummary(
        kind="email-verification",
        request_id=verification.pk,
        status=state,
        title=f"Verify {verification.email}",
        decided_by=verification.email if confirmed else "",
        decided_at=verification.confirmed_at,
        channel="email" if confirmed else "",
        comment="",
        approvals=0,
        required=0,
        entries=(),
        url="",
        note=verification.lapsed_reason(now) if state == "expired" else "",
    )


# --- e-mail link pages ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkPage:
    """What a signed link's page shows before anything is done.

    ``state``: "valid" (the action may be taken), "invalid", "used", "decided",
    "expired", or "refused" (valid link, but this reviewer cannot decide now).
    """

    state: str
    message: str = ""
    verification: EmailVerification | None = None
    detail: RequestDetail | None = None
    reviewer_name: str = ""


def verification_link_page(token: str) -> LinkPage:
    try:
        claims = links.read(links.VERIFY, token)
    except LinkInvalid as error:
        return LinkPage("invalid", error.message)
    verification = (
        EmailVerification.objects.select_related("execution", "operation")
        .filter(pk=claims.row_id, nonce=claims.nonce)
        .first()
    )
    if verification is None:
        return LinkPage("invalid", LinkInvalid().message)
    if verification.confirmed_at is not None or links.is_used(claims):
        return LinkPage("used", "This address was already confirmed with this link.", verification)
    state = verification.state(clock.now())
    if state == "expired":
        return LinkPage("expired", verification.lapsed_reason(clock.now()), verification)
    return LinkPage("valid", verification=verification)


def review_link_page(token: str) -> LinkPage:
    try:
        claims = links.read(links.REVIEW, token)
        notification = notification_for_link(claims)
    except LinkInvalid as error:
        return LinkPage("invalid", error.message)
    request = ApprovalRequest.objects.select_related("execution__function", "operation").get(
        pk=notification.request_id
    )
    scope = InboxScope(user=notification.user, sees_all=False, may_view_executions=False)
    detail = request_detail(scope, request, clock.now())
    name = notification.user.get_username()
    if links.is_used(claims):
        return LinkPage("used", LinkUsed().message, detail=detail, reviewer_name=name)
    if detail.state == RequestStatus.EXPIRED:
        return LinkPage("expired", detail.lapsed_reason, detail=detail, reviewer_name=name)
    if detail.state != RequestStatus.PENDING:
        return LinkPage("decided", detail.cannot_decide, detail=detail, reviewer_name=name)
    if detail.cannot_decide:
        return LinkPage("refused", detail.cannot_decide, detail=detail, reviewer_name=name)
    return LinkPage("valid", detail=detail, reviewer_name=name)
