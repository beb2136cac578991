"""Access keys for the Lambda-compatible API: issue, list, revoke, look up.

SigV4 needs the secret itself (the server recomputes the signature), so it
cannot be hashed like a password. It is encrypted with Fernet under a key
derived from ``settings.DURABLE_ACCESS_KEY_SECRET`` (the Django secret key by
default): a copy of the database alone does not reveal any secret.

A key acts with its owner's permissions (the console's groups, ``executions.access``);
a key without an owner is the deployment's admin key.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import secrets
import string
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.utils import timezone

from executions import audit
from executions.access import API_OPERATION_PERMISSIONS
from executions.audit import Actor
from executions.engine.errors import ResourceNotFound
from executions.models import AccessKey

KEY_ID_ALPHABET = string.ascii_uppercase + string.digits
# Touching last_used_at on every signed request would add a write to every
# checkpoint; once a minute is enough to answer "is this key still used?".
LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedKey:
    """A new key: the only moment the secret is available in the clear."""

    access_key_id: str
    secret_access_key: str
    key: AccessKey

    def as_json(self) -> dict[str, Any]:
        return {
            "AccessKeyId": self.access_key_id,
            "SecretAccessKey": self.secret_access_key,
            "CreatedAt": self.key.created_at.isoformat(),
            "Description": self.key.description,
        }


def _fernet() -> Fernet:
    material = hashlib.sha256(
        b"durable-console access keys:" + settings.DURABLE_ACCESS_KEY_SECRET.encode()
    ).digest()
    return Fernet(base64.urlsafe_b64encode(material))


def encrypt_secret(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt_secret(token: str) -> str | None:
    """The secret, or None if it was encrypted under another key (secret key rotated)."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        return None


def new_access_key_id() -> str:
    # Same shape as AWS long-term key ids, so tools that check it are content.
    return "AKIA" + "".join(secrets.choice(KEY_ID_ALPHABET) for _ in range(16))


def new_secret() -> str:
    # 40 characters like an AWS secret; base64 alphabet, 240 bits.
    return base64.b64encode(secrets.token_bytes(30)).decode()


def key_create(*, description: str = "", user: Any = None) -> IssuedKey:
    secret = new_secret()
    key = AccessKey.objects.create(
        access_key_id=new_access_key_id(),
        secret_encrypted=encrypt_secret(secret),
        description=description[:256],
        user=user,
    )
    return IssuedKey(key.access_key_id, secret, key)


def key_revoke(access_key_id: str) -> AccessKey:
    """Revoke a key; revoking twice keeps the first revocation time."""
    key = AccessKey.objects.filter(access_key_id=access_key_id).first()
    if key is None:
        raise ResourceNotFound(f"Access key not found: {access_key_id}")
    AccessKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    key.refresh_from_db()
    return key


def key_list() -> list[AccessKey]:
    return list(AccessKey.objects.select_related("user"))


@dataclass(frozen=True)
class KeyLookup:
    key: AccessKey
    secret: str | None


def key_for_request(access_key_id: str) -> KeyLookup | None:
    """The key named in a signed request, with its secret; None if unknown."""
    key = AccessKey.objects.select_related("user").filter(access_key_id=access_key_id).first()
    if key is None:
        return None
    return KeyLookup(key, decrypt_secret(key.secret_encrypted))


def key_mark_used(key: AccessKey) -> None:
    now = timezone.now()
    if key.last_used_at is not None and now - key.last_used_at < LAST_USED_RESOLUTION:
        return
    AccessKey.objects.filter(pk=key.pk).update(last_used_at=now)


# --- what a key may do ------------------------------------------------------------------------

ADMIN_KEY_LABEL = "deployment admin key (no owner)"


def key_acts_as(key: AccessKey) -> str:
    """Who a key's requests act as, for listings: its owner, or the deployment's admin key."""
    return key.user.get_username() if key.user is not None else ADMIN_KEY_LABEL


def key_missing_permissions(key: AccessKey, operation: str) -> tuple[str, ...]:
    """The permissions ``operation`` needs that the key's owner lacks (none for the admin key).

    An inactive owner has none: deactivating a person shuts their keys too.
    """
    needed = API_OPERATION_PERMISSIONS[operation]
    if key.user is None:
        return ()
    return tuple(perm for perm in needed if not key.user.has_perm(perm))


@dataclass(frozen=True)
class Refusal:
    """A signed request its key may not make; already in the audit log."""

    operation: str
    acts_as: str
    target: str
    missing: tuple[str, ...]

    @property
    def message(self) -> str:
        # AWS's wording, so people and tools read it the usual way.
        resource = f" on resource: {self.target}" if self.target else ""
        return (
            f"User: {self.acts_as} is not authorized to perform: lambda:{self.operation}{resource} "
            f"because the access key's owner lacks {', '.join(self.missing)}"
        )


def key_authorize(key: AccessKey, operation: str, target: str = "") -> Refusal | None:
    """None if the key may run the API ``operation``; otherwise the refusal, audited.

    ``target`` names what the request acts on (an ARN, a function), never a callback id:
    those are credentials, and the audit log is widely readable.
    """
    missing = key_missing_permissions(key, operation)
    if not missing:
        return None
    audit.record(
        Actor.api(key.access_key_id, key.user),
        "api.denied",
        target,
        operation=operation,
        missing_permissions=list(missing),
    )
    return Refusal(operation, key_acts_as(key), target, missing)


def revoke_keys_of_deleted_user(sender: Any, instance: Any, **kwargs: Any) -> None:
    """pre_delete of a user: revoke their keys first, or SET_NULL would make them admin keys."""
    AccessKey.objects.filter(user=instance, revoked_at__isnull=True).update(revoked_at=timezone.now())
