"""What durable handlers call, inside a ``wait_for_callback`` submitter, to reach people.

    @durable_wait_for_callback
    def ask(callback_id: str, context: WaitForCallbackContext, doc: dict) -> None:
        request_approval(callback_id, title=doc["title"], summary="...", document=doc,
                         reviewers=["approvers"], expires_in=24 * 3600)

Both functions are idempotent per callback id: the SDK may run a submitter
again (a retry after a failure, or a replay before its step was checkpointed),
and a second call returns the first call's request without creating or
e-mailing anything twice. Only e-mails that failed to go out are sent again;
if any fails, DeliveryError is raised after the rest were sent, so the step can
be retried.

Handlers run on the SDK's short-lived threads, so the database work goes
through ``executions.workers.handler_db`` (one long-lived thread per process); e-mail is
sent from the calling thread, outside any transaction.

A callback that is no longer waiting (answered already, perhaps by a fast
external caller, or timed out) needs nobody: the call then does nothing and
returns ``{"closed": True, ...}``. Raising would fail the submitter step, and
with it a ``wait_for_callback`` whose callback has in fact been answered.

Raises CallbackNotFound when the callback id is not one of this service's (the
handler runs on another backend: there is no inbox to put the request in),
InvalidRequest for unusable arguments, DeliveryError as above.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from typing import Any

from django.core.mail import EmailMultiAlternatives
from django.urls import reverse

from approvals import links, notifications, services
from approvals.errors import (
    CallbackNotFound,
    DeliveryError,
    InvalidRequest,
    RequestExpired,
    UnknownReviewers,
)
from executions.workers import handler_db

__all__ = [
    "CallbackNotFound",
    "DeliveryError",
    "InvalidRequest",
    "RequestExpired",
    "UnknownReviewers",
    "request_approval",
    "send_verification_email",
]


def request_approval(
    callback_id: str,
    *,
    title: str,
    summary: str,
    document: Any,
    reviewers: str | Sequence[str],
    expires_in: float | datetime.timedelta,
    required: int = 1,
    allow_self_approval: bool = False,
) -> dict[str, Any]:
    """Put a decision in the reviewers' inboxes and e-mail each of them a personal link.

    ``reviewers``: user names (or a user's e-mail address) and group names.
    ``expires_in``: seconds or a timedelta, capped by the callback's own timeout.
    ``required``: approvals needed (one rejection rejects). The person who
    started the execution cannot decide unless ``allow_self_approval``.

    The callback is completed with ``{"approved": true, "comments", "reviewer"}``
    or ``{"approved": false, "reason", "reviewer"}`` (JSON). Returns a summary
    (plain JSON, so a submitter may return it): request id, inbox URL, expiry, closed.
    """
    fields = {
        "title": title,
        "summary": summary,
        "document": document,
        "reviewers": list(reviewers) if not isinstance(reviewers, str) else reviewers,
        "expires_in": expires_in,
        "required": required,
        "allow_self_approval": allow_self_approval,
    }
    summary_out, messages = handler_db.run(_create_request, callback_id, fields)
    _deliver(messages, services.notifications_mark_sent)
    return summary_out


def _create_request(
    callback_id: str, fields: dict[str, Any]
) -> tuple[dict[str, Any], list[tuple[int, EmailMultiAlternatives]]]:
    try:
        request, _ = services.approval_request_create(callback_id=callback_id, **fields)
    except RequestExpired:
        return {"request_id": None, "url": "", "expires_at": None, "closed": True}, []
    summary = {
        "request_id": request.pk,
        "url": links.absolute(reverse("approvals:detail", args=[request.pk])),
        "expires_at": request.expires_at.isoformat(),
        "closed": False,
    }
    return summary, notifications.reviewer_messages(request)


def send_verification_email(
    callback_id: str, *, email: str, expires_in: float | datetime.timedelta
) -> dict[str, Any]:
    """E-mail ``email`` a signed, single-use link; confirming it completes the callback with ``true``.

    The link expires with the callback (or after ``expires_in``, if sooner).
    Returns the verification id, its expiry, and whether the callback was already closed.
    """
    summary, message = handler_db.run(_create_verification, callback_id, email, expires_in)
    if message is not None:
        _deliver([(summary["verification_id"], message)], _mark_verification_sent)
    return summary


def _create_verification(
    callback_id: str, email: str, expires_in: float | datetime.timedelta
) -> tuple[dict[str, Any], EmailMultiAlternatives | None]:
    try:
        verification, _ = services.verification_create(
            callback_id=callback_id, email=email, expires_in=expires_in
        )
    except RequestExpired:
        return {"verification_id": None, "expires_at": None, "closed": True}, None
    summary = {
        "verification_id": verification.pk,
        "expires_at": verification.expires_at.isoformat(),
        "closed": False,
    }
    return summary, notifications.verification_message(verification)


def _mark_verification_sent(ids: list[int]) -> None:
    for verification_id in ids:
        services.verification_mark_sent(verification_id)


def _deliver(
    messages: list[tuple[int, EmailMultiAlternatives]], mark_sent: Callable[[list[int]], None]
) -> None:
    sent, failures = notifications.deliver(messages)
    if sent:
        handler_db.run(mark_sent, sent)
    if failures:
        raise DeliveryError("Some e-mails were not sent: " + "; ".join(failures))
