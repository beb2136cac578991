"""An e-mail backend for deployments without a mail server: it logs that a message was due,
never its body.

Approvals e-mails carry signed links that act for their recipient (decide a request, confirm
an address), so a body in a log would hand those powers to whoever reads the logs. Embedded
``make run`` keeps Django's console backend instead: there the person at the terminal is the
demo's only user and follows the printed links.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

logger = logging.getLogger(__name__)


class BodilessLogBackend(BaseEmailBackend):
    """Logs each message's recipients and subject at WARNING, and counts it as delivered."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        for message in email_messages:
            logger.warning(
                "e-mail not sent (EMAIL_HOST is not set): to %s, subject %r; body not logged",
                ", ".join(message.recipients()),
                message.subject,
            )
        return len(email_messages)
