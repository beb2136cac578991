"""Signed, single-use links for e-mails (docs/architecture.md, where each rule lives).

A token is ``django.core.signing.dumps`` (a TimestampSigner under a salt per
purpose) of the row id and the row's random nonce, so nobody can make one
without the secret key, and a token for one purpose is refused for another.
Expiry comes from the row (it expires with its callback), and single use from
``UsedLinkToken``: the service that acts on a link inserts its digest in the
same transaction as the action, and a second insert fails on the unique index.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.urls import reverse

from approvals.errors import LinkInvalid, LinkUsed
from approvals.models import EmailVerification, ReviewerNotification, UsedLinkToken
from executions.engine import clock

VERIFY = "verify"
REVIEW = "review"
_SALTS = {VERIFY: "approvals.link.verify-email", REVIEW: "approvals.link.review"}


def new_nonce() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True)
class LinkClaims:
    """What a valid token says: the row it is for, and that row's nonce."""

    purpose: str
    row_id: int
    nonce: str
    user_id: int | None = None  # review links: the reviewer


def verification_token(verification: EmailVerification) -> str:
    return signing.dumps({"id": verification.pk, "n": verification.nonce}, salt=_SALTS[VERIFY])


def review_token(notification: ReviewerNotification) -> str:
    payload = {"id": notification.request_id, "u": notification.user_id, "n": notification.nonce}
    return signing.dumps(payload, salt=_SALTS[REVIEW])


def read(purpose: str, token: str) -> LinkClaims:
    """The claims of a genuine token for ``purpose``; LinkInvalid for anything else."""
    try:
        payload: Any = signing.loads(token, salt=_SALTS[purpose])
    except signing.BadSignature as error:
        raise LinkInvalid() from error
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), int):
        raise LinkInvalid()
    nonce, user_id = payload.get("n"), payload.get("u")
    if not isinstance(nonce, str) or (purpose == REVIEW and not isinstance(user_id, int)):
        raise LinkInvalid()
    return LinkClaims(purpose, payload["id"], nonce, user_id)


def _digest(purpose: str, nonce: str) -> str:
    return hashlib.sha256(f"{purpose}:{nonce}".encode()).hexdigest()


def is_used(claims: LinkClaims) -> bool:
    return UsedLinkToken.objects.filter(digest=_digest(claims.purpose, claims.nonce)).exists()


def consume(claims: LinkClaims) -> None:
    """Mark the link used (inside the caller's transaction); LinkUsed if it already was."""
    try:
        with transaction.atomic():
            UsedLinkToken.objects.create(
                digest=_digest(claims.purpose, claims.nonce), purpose=claims.purpose, used_at=clock.now()
            )
    except IntegrityError as error:
        raise LinkUsed() from error


def absolute(path: str) -> str:
    """A URL for e-mails: the console's public address plus ``path``."""
    return settings.DURABLE_PUBLIC_URL.rstrip("/") + path


def verification_url(verification: EmailVerification) -> str:
    return absolute(reverse("approvals:verify-link", args=[verification_token(verification)]))


def review_url(notification: ReviewerNotification) -> str:
    return absolute(reverse("approvals:review-link", args=[review_token(notification)]))
