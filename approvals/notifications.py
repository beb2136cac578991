"""The e-mails: built from templates, sent through Django's mail API.

Building reads the database (recipients, links); sending is slow network I/O
and happens outside any transaction, one message at a time, so one refused
address does not stop the others and only the sent ones are marked sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TypeVar

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string
from django.urls import reverse

from approvals import links
from approvals.models import ApprovalRequest, EmailVerification, ReviewerNotification
from executions.engine import clock

logger = logging.getLogger(__name__)

K = TypeVar("K")


def _message(template: str, subject: str, to: str, context: dict[str, object]) -> EmailMultiAlternatives:
    text = render_to_string(f"approvals/email/{template}.txt", context)
    html = render_to_string(f"approvals/email/{template}.html", context)
    message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [to])
    message.attach_alternative(html, "text/html")
    return message


def reviewer_messages(request: ApprovalRequest) -> list[tuple[int, EmailMultiAlternatives]]:
    """(notification id, message) for each reviewer not yet told about the request."""
    unsent = ReviewerNotification.objects.filter(request=request, sent_at__isnull=True).select_related("user")
    inbox_url = links.absolute(reverse("approvals:detail", args=[request.pk]))
    return [
        (
            notification.pk,
            _message(
                "review_request",
                f"Approval needed: {request.title}",
                notification.email,
                {
                    "request": request,
                    "reviewer": notification.user,
                    "review_url": links.review_url(notification),
                    "inbox_url": inbox_url,
                    "expires_at": request.expires_at,
                    "time_left": request.expires_at - clock.now(),
                },
            ),
        )
        for notification in unsent
    ]


def verification_message(verification: EmailVerification) -> EmailMultiAlternatives | None:
    """The verification e-mail, or None once it was sent."""
    if verification.sent_at is not None:
        return None
    return _message(
        "verify_email",
        "Confirm your e-mail address",
        verification.email,
        {
            "verification": verification,
            "verify_url": links.verification_url(verification),
            "expires_at": verification.expires_at,
        },
    )


def deliver(messages: Iterable[tuple[K, EmailMultiAlternatives]]) -> tuple[list[K], list[str]]:
    """Send each message; returns the keys of those sent and a description of each failure."""
    sent: list[K] = []
    failures: list[str] = []
    connection = get_connection()
    for key, message in messages:
        message.connection = connection
        try:
            message.send()
        except Exception as error:  # SMTP errors come in many classes; every one is a failure here
            logger.warning("e-mail to %s not sent", message.to, exc_info=True)
            failures.append(f"{', '.join(message.to)}: {error}")
        else:
            sent.append(key)
    return sent, failures
