"""Callback ids: 256 bits, standard base64, never stored in the clear.

The operation row keeps a random seed and the SHA-256 of the id. The id itself
is HMAC(key, seed), so it can be handed to the SDK again on every replay, yet
a copy of the database alone cannot produce a valid id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from django.conf import settings


def new_seed() -> str:
    return secrets.token_hex(32)


def callback_id_for(seed: str) -> str:
    key = settings.DURABLE_CALLBACK_KEY.encode()
    digest = hmac.new(key, b"callback-id:" + seed.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def hash_callback_id(callback_id: str) -> str:
    return hashlib.sha256(callback_id.encode()).hexdigest()
