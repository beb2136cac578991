"""Checkpoint tokens and state-page markers.

A token binds (execution, invocation number, sequence) and carries an HMAC so
it cannot be forged for another execution. Tokens are standard base64, as the
API model requires ``[A-Za-z0-9+/]+={0,2}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from django.conf import settings

from executions.engine.errors import InvalidCheckpointToken, InvalidParameterValue


@dataclass(frozen=True)
class CheckpointToken:
    execution_id: int
    invocation: int
    seq: int

    def encode(self) -> str:
        body = f"{self.execution_id}:{self.invocation}:{self.seq}"
        return base64.b64encode(f"{body}:{_sign(body)}".encode()).decode()

    @classmethod
    def decode(cls, token: str) -> CheckpointToken:
        try:
            text = base64.b64decode(token.encode(), validate=True).decode()
            execution_id, invocation, seq, signature = text.split(":")
        except (ValueError, binascii.Error, UnicodeError) as exc:
            raise InvalidCheckpointToken("malformed") from exc
        body = f"{execution_id}:{invocation}:{seq}"
        if not hmac.compare_digest(signature, _sign(body)):
            raise InvalidCheckpointToken("signature mismatch")
        return cls(int(execution_id), int(invocation), int(seq))


def _sign(body: str) -> str:
    key = settings.SECRET_KEY.encode()
    return hmac.new(key, b"checkpoint-token:" + body.encode(), hashlib.sha256).hexdigest()[:24]


def encode_marker(number: int) -> str:
    """A page marker carrying one number (state pages: the last position of the page)."""
    return base64.b64encode(f"ops:{number}".encode()).decode()


def decode_marker(marker: str) -> int:
    try:
        kind, offset = base64.b64decode(marker.encode(), validate=True).decode().split(":")
        if kind != "ops" or int(offset) < 0:
            raise ValueError(kind)
        return int(offset)
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise InvalidParameterValue(f"Invalid marker: {marker!r}") from exc
