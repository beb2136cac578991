"""AWS Signature Version 4 verification for the API (service ``lambda``).

The server recomputes the signature the way the AWS docs (and botocore) build
it and compares in constant time. Two details decide whether real clients pass:

- The canonical URI is the path *as sent* (percent-encoded), URI-encoded once
  more: for every service but S3 the path is double-encoded. ARNs and callback
  ids travel as ``%3A``/``%2F``/``%2B``..., which the server's decoded path
  has lost (``%2F`` and ``/`` look alike), so the raw path is taken from the
  ASGI scope (``raw_path``) or the WSGI server (``RAW_URI``/``REQUEST_URI``).
- The payload hash is always computed from the body; a client-sent
  ``X-Amz-Content-SHA256`` (e.g. ``UNSIGNED-PAYLOAD``) is not trusted.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from executions.api import access_keys
from executions.api.errors import (
    AccessDenied,
    IncompleteSignature,
    InvalidSignature,
    MissingAuthenticationToken,
    RequestTooLarge,
    UnrecognizedClient,
)
from executions.models import AccessKey

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "lambda"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_CLOCK_SKEW = datetime.timedelta(minutes=15)
_AUTH_FIELD = re.compile(r"(Credential|SignedHeaders|Signature)=([^,\s]+)")


@dataclass(frozen=True)
class SignedRequest:
    """What SigV4 covers, independent of Django: method, raw path and query, headers, body."""

    method: str
    raw_path: str
    query_string: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class Authorization:
    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


# --- the algorithm --------------------------------------------------------------------


def parse_authorization(header: str) -> Authorization:
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise IncompleteSignature(f"Unsupported authorization algorithm: {algorithm!r}")
    fields = dict(_AUTH_FIELD.findall(rest))
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if name not in fields]
    if missing:
        raise IncompleteSignature(
            f"Authorization header requires '{missing[0]}' parameter. Authorization={header}"
        )
    parts = fields["Credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise IncompleteSignature(f"Credential should be scoped correctly: {fields['Credential']}")
    return Authorization(
        access_key_id=parts[0],
        date=parts[1],
        region=parts[2],
        service=parts[3],
        signed_headers=tuple(fields["SignedHeaders"].split(";")),
        signature=fields["Signature"],
    )


def canonical_uri(raw_path: str) -> str:
    return quote(_remove_dot_segments(raw_path) or "/", safe="/~")


def _remove_dot_segments(path: str) -> str:
    # RFC 3986 §5.2.4, plus AWS's removal of empty segments (as botocore signs).
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    trailing = "/" if path.endswith("/") and segments else ""
    return "/" + "/".join(segments) + trailing


def canonical_query(query_string: str) -> str:
    """Decode each pair and encode it the canonical way (RFC 3986 unreserved kept), sorted."""
    pairs = []
    for pair in query_string.split("&") if query_string else []:
        key, _, value = pair.partition("=")
        pairs.append((_encode(unquote(key)), _encode(unquote(value))))
    return "&".join(f"{key}={value}" for key, value in sorted(pairs))


def _encode(value: str) -> str:
    return quote(value, safe="-_.~")


def canonical_request(request: SignedRequest, signed_headers: tuple[str, ...]) -> str:
    headers = "".join(
        f"{name}:{' '.join(request.headers.get(name, '').split())}\n" for name in signed_headers
    )
    return "\n".join(
        (
            request.method.upper(),
            canonical_uri(request.raw_path),
            canonical_query(request.query_string),
            headers,
            ";".join(signed_headers),
            hashlib.sha256(request.body).hexdigest(),
        )
    )


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def signature(secret: str, auth: Authorization, to_sign: str) -> str:
    key = f"AWS4{secret}".encode()
    for part in (auth.date, auth.region, auth.service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def verify(
    request: SignedRequest,
    lookup: Callable[[str], access_keys.KeyLookup | None],
    now: datetime.datetime,
    region: str,
) -> AccessKey:
    """The access key that signed ``request``; raises the AWS error a client would get."""
    header = request.headers.get("authorization")
    if not header:
        raise MissingAuthenticationToken()
    auth = parse_authorization(header)
    amz_date = _check_date(request, auth, now)
    _check_scope(auth, region)
    found = lookup(auth.access_key_id)
    # An unknown, revoked or undecryptable key all read the same to the caller.
    if found is None or found.secret is None or not found.key.is_active:
        raise UnrecognizedClient()
    if "x-amz-security-token" in request.headers:
        raise UnrecognizedClient()  # no temporary credentials are issued here
    canonical = canonical_request(request, auth.signed_headers)
    expected = signature(found.secret, auth, string_to_sign(amz_date, auth.scope, canonical))
    if not hmac.compare_digest(expected, auth.signature):
        raise InvalidSignature(
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service "
            "documentation for details."
        )
    return found.key


def _check_date(request: SignedRequest, auth: Authorization, now: datetime.datetime) -> str:
    amz_date = request.headers.get("x-amz-date", "")
    if not amz_date:
        raise IncompleteSignature(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    try:
        signed_at = datetime.datetime.strptime(amz_date, AMZ_DATE_FORMAT).replace(tzinfo=datetime.UTC)
    except ValueError as exc:
        raise IncompleteSignature(f"Invalid X-Amz-Date: {amz_date!r}") from exc
    if "host" not in auth.signed_headers or "x-amz-date" not in auth.signed_headers:
        raise IncompleteSignature("The host and x-amz-date headers must be signed.")
    if auth.date != amz_date[:8]:
        raise InvalidSignature(f"Credential date {auth.date} does not match X-Amz-Date {amz_date}")
    if abs(now - signed_at) > MAX_CLOCK_SKEW:
        # AWS's wording; botocore recognises it as a clock-skew error.
        bound = (now - MAX_CLOCK_SKEW).strftime(AMZ_DATE_FORMAT)
        raise InvalidSignature(
            f"Signature expired: {amz_date} is now earlier than {bound} "
            f"({now.strftime(AMZ_DATE_FORMAT)} - 15 min.)"
            if signed_at < now
            else f"Signature not yet current: {amz_date} is still later than "
            f"{(now + MAX_CLOCK_SKEW).strftime(AMZ_DATE_FORMAT)} "
            f"({now.strftime(AMZ_DATE_FORMAT)} + 15 min.)"
        )
    return amz_date


def _check_scope(auth: Authorization, region: str) -> None:
    if auth.service != SERVICE:
        raise InvalidSignature(f"Credential should be scoped to correct service: '{SERVICE}'.")
    if auth.region != region:
        raise InvalidSignature(
            f"Credential should be scoped to a valid region, not '{auth.region}'. "
            f"This server's region is '{region}'."
        )


# --- Django / DRF glue --------------------------------------------------------------------


def raw_path(request: HttpRequest) -> str:
    """The path exactly as the client sent it (still percent-encoded)."""
    scope = getattr(request, "scope", None)
    if scope and scope.get("raw_path"):
        return scope["raw_path"].decode("latin-1")
    for key in ("RAW_URI", "REQUEST_URI"):
        if value := request.META.get(key):
            return value.split("?", 1)[0]
    # A server that keeps no raw path (wsgiref): right unless a label held '/' or '%'.
    return quote(request.path, safe="/:$=+@,;")


def read_body(request: HttpRequest) -> bytes:
    """The request body, read once, refused past the API's size limit.

    Read from the stream rather than ``request.body``: Django caps that at
    DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) site-wide, below Invoke's 6 MB.
    """
    cached: bytes | None = getattr(request, "_durable_api_body", None)
    if cached is not None:
        return cached
    limit = settings.DURABLE_API_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise RequestTooLarge(f"Request must be smaller than {limit} bytes")
    body = request.read(limit + 1) if declared else b""
    if len(body) > limit:
        raise RequestTooLarge(f"Request must be smaller than {limit} bytes")
    request._durable_api_body = body  # type: ignore[attr-defined]
    return body


def signed_request(request: HttpRequest) -> SignedRequest:
    return SignedRequest(
        method=request.method or "GET",
        raw_path=raw_path(request),
        query_string=request.META.get("QUERY_STRING", ""),
        headers={name.lower(): value for name, value in request.headers.items()},
        body=read_body(request),
    )


class SigV4Authentication(BaseAuthentication):
    """DRF authentication: a valid signature from an active key, or an AWS error."""

    def authenticate(self, request: Request) -> tuple[object, AccessKey]:
        key = verify(
            signed_request(request._request),
            access_keys.key_for_request,
            timezone.now(),
            settings.DURABLE_REGION,
        )
        access_keys.key_mark_used(key)
        return (key.user or AnonymousUser()), key

    def authenticate_header(self, request: Request) -> str:
        return ALGORITHM


class HasAccessKey(BasePermission):
    """Defence in depth: no view runs without the key SigV4Authentication found."""

    def has_permission(self, request: Request, view: object) -> bool:
        return isinstance(request.auth, AccessKey)


class KeyMayRunOperation(BasePermission):
    """The key's owner has the permissions of the operation the view runs (403 otherwise).

    Checked before the view parses or looks up anything, so a refused request changes
    nothing and learns nothing (not even whether the ARN exists).
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        operation = view.operation_for(request.method or "GET")
        if operation is None:  # a route that runs no operation (it only refuses)
            return True
        refusal = access_keys.key_authorize(request.auth, operation, _target(view.kwargs))
        if refusal is not None:
            raise AccessDenied(refusal.message)
        return True


def _target(kwargs: Mapping[str, Any]) -> str:
    # Never the callback id: it is a credential of its own.
    return str(kwargs.get("arn") or kwargs.get("function_name") or "")
