"""Approvals state changes: the only code that creates requests and verifications or decides them.

Views, the e-mail link pages and the handler-side API call these; none of them
writes the tables itself. Completing a callback goes through the engine's
``executions.services`` in the same transaction as the decision, so a decision
is recorded if and only if its callback was completed (or did not need to be).

Exactly one outcome: a decision locks the request row first (then the engine
locks the execution row, always in that order), so two reviewers deciding at
once are serialised and the second sees the first one's outcome.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Sequence
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import IntegrityError, transaction

from approvals import links
from approvals.errors import (
    AlreadyDecided,
    AlreadyVoted,
    CallbackNotFound,
    InvalidRequest,
    LinkInvalid,
    LinkUsed,
    NotAReviewer,
    RequestExpired,
    SelfApprovalRefused,
    UnknownReviewers,
)
from approvals.models import (
    ApprovalRequest,
    ApprovalReviewer,
    Decision,
    DecisionChannel,
    EmailVerification,
    Outcome,
    RequestStatus,
    ReviewerNotification,
    VerificationStatus,
)
from executions import audit, services
from executions.audit import Actor
from executions.engine import clock
from executions.engine.callback_ids import hash_callback_id
from executions.engine.errors import CallbackTimeout, ResourceNotFound
from executions.live import updates as live
from executions.models import AuditChannel, Operation
from executions.vocabulary import OperationStatus, OperationType

DECIDE_ANY = "approvals.decide_any_request"
MAX_DOCUMENT_BYTES = 256 * 1024
MAX_REQUIRED = 50
MAX_COMMENT_CHARS = 2000

User = AbstractBaseUser
Expiry = int | float | datetime.timedelta


# --- creating requests ----------------------------------------------------------------------


def approval_request_create(
    *,
    callback_id: str,
    title: str,
    summary: str = "",
    document: Any = None,
    reviewers: str | Sequence[str],
    expires_in: Expiry,
    required: int = 1,
    allow_self_approval: bool = False,
) -> tuple[ApprovalRequest, bool]:
    """The request for this callback, created on the first call; (request, created).

    Idempotent per callback id: a retried submitter gets the existing request
    back unchanged. Raises CallbackNotFound, InvalidRequest (UnknownReviewers).
    """
    digest = hash_callback_id(callback_id) if isinstance(callback_id, str) else ""
    if existing := ApprovalRequest.objects.filter(callback_id_hash=digest).first():
        return existing, False
    _check_request_fields(title, document, required)
    op = _waiting_callback(callback_id)
    resolved = _resolve_reviewers(reviewers)
    now = clock.now()
    try:
        with transaction.atomic():
            request = ApprovalRequest.objects.create(
                callback_id_hash=digest,
                execution=op.execution,
                operation=op,
                title=title,
                summary=summary or "",
                document=document,
                required=required,
                allow_self_approval=allow_self_approval,
                created_at=now,
                expires_at=_deadline(now, expires_in, op),
            )
            ApprovalReviewer.objects.bulk_create(
                ApprovalReviewer(request=request, name=name, user=user, group=group)
                for name, user, group in resolved
            )
            _plan_notifications(request, resolved)
            # The title names the execution in the console unless its input gave it a label.
            services.execution_label_fill_in(op.execution_id, title)
            audit.record(
                Actor.system("approvals"),
                "approval.request",
                op.execution.arn,
                request=request.pk,
                title=title,
                reviewers=[name for name, _, _ in resolved],
                required=required,
                expires_at=request.expires_at.isoformat(),
            )
            _notify_console(op.execution_id)
    except IntegrityError:  # a concurrent call for the same callback got there first
        return ApprovalRequest.objects.get(callback_id_hash=digest), False
    return request, True


def _check_request_fields(title: str, document: Any, required: int) -> None:
    if not isinstance(title, str) or not title.strip() or len(title) > 200:
        raise InvalidRequest("title must be a non-empty string of at most 200 characters")
    if isinstance(required, bool) or not isinstance(required, int) or not 1 <= required <= MAX_REQUIRED:
        raise InvalidRequest(f"required must be a whole number from 1 to {MAX_REQUIRED}")
    try:
        size = len(json.dumps(document).encode())
    except (TypeError, ValueError) as error:
        raise InvalidRequest(f"document must be JSON-serialisable: {error}") from error
    if size > MAX_DOCUMENT_BYTES:
        raise InvalidRequest(f"document is {size} bytes; at most {MAX_DOCUMENT_BYTES} are allowed")


def _waiting_callback(callback_id: str) -> Operation:
    """The STARTED CALLBACK operation with this id (the SDK creates it before the submitter runs)."""
    if not isinstance(callback_id, str) or not callback_id:
        raise InvalidRequest("callback_id must be the id the SDK passed to the submitter")
    op = (
        Operation.objects.select_related("execution")
        .filter(callback_id_hash=hash_callback_id(callback_id), type=OperationType.CALLBACK)
        .first()
    )
    if op is None:
        raise CallbackNotFound("No callback with this id exists on this service.")
    if op.status != OperationStatus.STARTED or op.execution.is_terminal:
        raise RequestExpired("The callback is no longer waiting.")
    return op


def _deadline(now: datetime.datetime, expires_in: Expiry, op: Operation) -> datetime.datetime:
    """``now + expires_in``, but never after the callback or the execution times out."""
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float | datetime.timedelta):
        raise InvalidRequest("expires_in must be seconds or a timedelta")
    if isinstance(expires_in, datetime.timedelta):
        delta = expires_in
    else:
        delta = datetime.timedelta(seconds=expires_in)
    if delta <= datetime.timedelta(0):
        raise InvalidRequest("expires_in must be positive")
    caps = [now + delta, op.callback_timeout_at, op.execution.timeout_at]
    return min(moment for moment in caps if moment is not None)


Resolved = list[tuple[str, User | None, Group | None]]


def _resolve_reviewers(names: str | Sequence[str]) -> Resolved:
    """Each name as a user (user name, else e-mail) or a group; all unknown names at once."""
    if isinstance(names, str):
        names = [names]
    wanted = list(dict.fromkeys(str(name).strip() for name in names if str(name).strip()))
    if not wanted:
        raise InvalidRequest("name at least one reviewer (a user name or a group name)")
    users = get_user_model().objects.filter(is_active=True)
    resolved: Resolved = []
    unknown: list[str] = []
    for name in wanted:
        user = users.filter(username=name).first()
        group = None if user else Group.objects.filter(name=name).first()
        if user is None and group is None and "@" in name:
            matches = list(users.filter(email__iexact=name)[:2])
            user = matches[0] if len(matches) == 1 else None
        if user is None and group is None:
            unknown.append(name)
        elif not any((user and u == user) or (group and g == group) for _, u, g in resolved):
            resolved.append((name, user, group))
    if unknown:
        raise UnknownReviewers(unknown)
    return resolved


def _plan_notifications(request: ApprovalRequest, resolved: Resolved) -> None:
    """One notification row per person who may decide and has an address."""
    recipients: dict[int, User] = {}
    for _, user, group in resolved:
        members = [user] if user else list(group.user_set.filter(is_active=True))
        recipients.update((member.pk, member) for member in members if member.email)
    if not request.allow_self_approval:
        recipients.pop(request.execution.started_by_id, None)
    ReviewerNotification.objects.bulk_create(
        ReviewerNotification(request=request, user=user, email=user.email, nonce=links.new_nonce())
        for user in recipients.values()
    )


def notifications_mark_sent(notification_ids: Iterable[int]) -> None:
    ReviewerNotification.objects.filter(pk__in=list(notification_ids)).update(sent_at=clock.now())


# --- deciding -------------------------------------------------------------------------------


def approval_decide(
    *,
    request_id: int,
    reviewer: User,
    outcome: str,
    comment: str = "",
    channel: str = DecisionChannel.INBOX,
    link: links.LinkClaims | None = None,
) -> Decision:
    """Record one reviewer's decision; complete the callback once the request is decided.

    N-of-M: the request is approved when ``required`` reviewers approved it,
    and rejected by the first rejection. Raises AlreadyDecided (with who
    decided), RequestExpired, NotAReviewer, SelfApprovalRefused, AlreadyVoted,
    and LinkUsed when ``link`` (an e-mail link acting for ``reviewer``) was used.
    """
    if outcome not in Outcome.values:
        raise ValueError(f"outcome must be one of {Outcome.values}")
    comment = (comment or "").strip()[:MAX_COMMENT_CHARS]
    decision: Decision | None = None
    with transaction.atomic():
        request = _lock_request(request_id)
        lapsed = _check_decidable(request)
        if not lapsed:
            _check_reviewer(request, reviewer)
            lapsed, decision = _record_decision(request, reviewer, outcome, comment, channel, link)
    if decision is None:  # raised after the commit, which keeps the request marked expired
        raise RequestExpired(lapsed)
    return decision


def approval_decide_by_link(*, token: str, outcome: str, comment: str = "") -> Decision:
    """A reviewer's decision through the signed link in their notification e-mail."""
    claims = links.read(links.REVIEW, token)
    notification = notification_for_link(claims)
    if links.is_used(claims):
        raise LinkUsed()
    return approval_decide(
        request_id=notification.request_id,
        reviewer=notification.user,
        outcome=outcome,
        comment=comment,
        channel=DecisionChannel.EMAIL,
        link=claims,
    )


def notification_for_link(claims: links.LinkClaims) -> ReviewerNotification:
    notification = (
        ReviewerNotification.objects.select_related("user")
        .filter(request_id=claims.row_id, user_id=claims.user_id, nonce=claims.nonce)
        .first()
    )
    if notification is None or not notification.user.is_active:
        raise LinkInvalid()
    return notification


def _lock_request(request_id: int) -> ApprovalRequest:
    # of=("self",): lock the request row only; the engine locks the execution itself.
    return (
        ApprovalRequest.objects.select_for_update(of=("self",))
        .select_related("execution", "operation")
        .get(pk=request_id)
    )


def _check_decidable(request: ApprovalRequest) -> str:
    """Raise AlreadyDecided; return why it lapsed (and mark it expired), or ""."""
    if request.status in (RequestStatus.APPROVED, RequestStatus.REJECTED):
        raise AlreadyDecided(request.status, request.decided_by_name)
    lapsed = request.lapsed_reason(clock.now())
    if lapsed:
        _mark_expired(request, lapsed)
    return lapsed


def _mark_expired(request: ApprovalRequest, reason: str) -> None:
    if request.status == RequestStatus.PENDING:
        request.status = RequestStatus.EXPIRED
        request.closed_reason = reason[:200]
        request.save(update_fields=["status", "closed_reason"])
        _notify_console(request.execution_id)


def may_decide(request: ApprovalRequest, user: User) -> bool:
    """Whether ``user`` is one of the request's reviewers, or may decide any request."""
    if not user.is_active:
        return False
    if user.has_perm(DECIDE_ANY):
        return True
    return ApprovalRequest.objects.filter(pk=request.pk).assigned_to(user).exists()


def _check_reviewer(request: ApprovalRequest, reviewer: User) -> None:
    if not may_decide(request, reviewer):
        raise NotAReviewer()
    if not request.allow_self_approval and request.execution.started_by_id == reviewer.pk:
        raise SelfApprovalRefused()
    earlier = Decision.objects.filter(request=request, reviewer=reviewer).first()
    if earlier is not None:
        raise AlreadyVoted(earlier.outcome)


def _record_decision(
    request: ApprovalRequest,
    reviewer: User,
    outcome: str,
    comment: str,
    channel: str,
    link: links.LinkClaims | None,
) -> tuple[str, Decision | None]:
    """Write the decision (and complete the callback if it settles the request).

    Returns ("", decision), or (why, None) when the callback turned out to be
    gone: then nothing of the decision is kept and the request is expired.
    """
    now = clock.now()
    try:
        with transaction.atomic():  # a savepoint: undone as a whole if the callback is gone
            if link is not None:
                links.consume(link)
            decision = Decision.objects.create(
                request=request,
                reviewer=reviewer,
                reviewer_name=reviewer.get_username(),
                outcome=outcome,
                channel=channel,
                comment=comment,
                decided_at=now,
            )
            _audit_decision(request, decision)
            _settle_if_decided(request, decision)
    except (CallbackTimeout, ResourceNotFound):
        reason = "The callback timed out or was completed elsewhere before this decision."
        _mark_expired(request, reason)
        return reason, None
    _notify_console(request.execution_id)
    return "", decision


def _audit_decision(request: ApprovalRequest, decision: Decision) -> None:
    reviewer = decision.reviewer
    if decision.channel == DecisionChannel.EMAIL:
        actor = Actor(AuditChannel.EMAIL, decision.reviewer_name, reviewer)
    else:
        actor = Actor.console(reviewer)
    audit.record(
        actor,
        f"approval.{decision.outcome}",
        request.execution.arn,
        request=request.pk,
        title=request.title,
        reviewer=decision.reviewer_name,
        channel=decision.channel,
        comment=decision.comment,
        decided_at=decision.decided_at.isoformat(),
    )


def _settle_if_decided(request: ApprovalRequest, decision: Decision) -> None:
    approvals = list(
        request.decisions.filter(outcome=Outcome.APPROVE).values_list("reviewer_name", flat=True)
    )
    if decision.outcome == Outcome.APPROVE and len(approvals) < request.required:
        return
    payload = _callback_payload(decision, approvals, request.required)
    _complete_callback(request, json.dumps(payload))
    request.status = RequestStatus.APPROVED if payload["approved"] else RequestStatus.REJECTED
    request.decided_at = decision.decided_at
    request.decided_by = decision.reviewer
    request.decided_by_name = decision.reviewer_name
    request.result = payload
    request.save(update_fields=["status", "decided_at", "decided_by", "decided_by_name", "result"])


def _callback_payload(decision: Decision, approvals: list[str], required: int) -> dict[str, Any]:
    """The shape examples/document_approval.py reads (and any handler can)."""
    if decision.outcome == Outcome.REJECT:
        reason = decision.comment or "rejected"
        return {"approved": False, "reason": reason, "reviewer": decision.reviewer_name}
    payload: dict[str, Any] = {
        "approved": True,
        "comments": decision.comment,
        "reviewer": decision.reviewer_name,
    }
    if required > 1:
        payload["reviewers"] = approvals
    return payload


def _complete_callback(row: ApprovalRequest | EmailVerification, result: str) -> None:
    """Complete the row's callback through the engine (raises CallbackTimeout if it is closed)."""
    if row.operation is None:
        raise ResourceNotFound("Callback not found")
    if row.operation.callback_id_hash != row.callback_id_hash:  # the seed changed under us
        raise ResourceNotFound("Callback not found")
    services.callback_succeed_operation(row.operation, result)


def _notify_console(execution_id: int) -> None:
    # The console re-fetches the execution's timeline, which shows decisions.
    transaction.on_commit(lambda: live.notify(execution_id))


# --- e-mail verification -----------------------------------------------------------------


def verification_create(
    *, callback_id: str, email: str, expires_in: Expiry
) -> tuple[EmailVerification, bool]:
    """The verification for this callback, created on the first call; (verification, created)."""
    digest = hash_callback_id(callback_id) if isinstance(callback_id, str) else ""
    if existing := EmailVerification.objects.filter(callback_id_hash=digest).first():
        return existing, False
    if not isinstance(email, str) or "@" not in email or len(email) > 254:
        raise InvalidRequest("email must be an e-mail address")
    op = _waiting_callback(callback_id)
    now = clock.now()
    try:
        with transaction.atomic():
            verification = EmailVerification.objects.create(
                callback_id_hash=digest,
                execution=op.execution,
                operation=op,
                email=email.strip(),
                nonce=links.new_nonce(),
                created_at=now,
                expires_at=_deadline(now, expires_in, op),
            )
            _notify_console(op.execution_id)
    except IntegrityError:
        return EmailVerification.objects.get(callback_id_hash=digest), False
    return verification, True


def verification_mark_sent(verification_id: int) -> None:
    EmailVerification.objects.filter(pk=verification_id).update(sent_at=clock.now())


def verification_confirm(*, token: str) -> EmailVerification:
    """The address owner clicked through: complete the callback with ``true``, once.

    Raises LinkInvalid, LinkUsed, or RequestExpired; none of them changes the callback.
    """
    claims = links.read(links.VERIFY, token)
    with transaction.atomic():
        verification = _lock_verification(claims)
        lapsed = verification.lapsed_reason(clock.now())
        if lapsed:
            _expire_verification(verification, lapsed)
        else:
            lapsed = _confirm(verification, claims)
    if lapsed:
        raise RequestExpired(lapsed)
    return verification


def _lock_verification(claims: links.LinkClaims) -> EmailVerification:
    verification = (
        EmailVerification.objects.select_for_update(of=("self",))
        .select_related("execution", "operation")
        .filter(pk=claims.row_id, nonce=claims.nonce)
        .first()
    )
    if verification is None:
        raise LinkInvalid()
    if verification.status == VerificationStatus.CONFIRMED:
        raise LinkUsed()
    return verification


def _confirm(verification: EmailVerification, claims: links.LinkClaims) -> str:
    try:
        with transaction.atomic():
            links.consume(claims)
            _complete_callback(verification, "true")
            verification.status = VerificationStatus.CONFIRMED
            verification.confirmed_at = clock.now()
            verification.save(update_fields=["status", "confirmed_at"])
            actor = Actor(AuditChannel.EMAIL, verification.email)
            audit.record(
                actor, "verification.confirm", verification.execution.arn, verification=verification.pk
            )
    except (CallbackTimeout, ResourceNotFound):
        reason = "The callback timed out or was completed elsewhere before the link was used."
        _expire_verification(verification, reason)
        return reason
    _notify_console(verification.execution_id)
    return ""


def _expire_verification(verification: EmailVerification, reason: str) -> None:
    if verification.status == VerificationStatus.PENDING:
        verification.status = VerificationStatus.EXPIRED
        verification.closed_reason = reason[:200]
        verification.save(update_fields=["status", "closed_reason"])
