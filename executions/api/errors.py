"""AWS error shapes for the Lambda-compatible API (docs/api.md, Errors).

Every error leaves as ``{"Type": "User"|"Service", "message": ...}`` with the
code in the ``X-Amzn-ErrorType`` header: botocore reads the code from that
header, and the SDK classifies retryable errors by it. A body without the
header would make botocore report the HTTP status as the code.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.http import HttpResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

from executions.engine.errors import InvalidParameterValue, ServiceError, TooManyRequests

logger = logging.getLogger(__name__)


# --- errors only the HTTP layer raises --------------------------------------------------


class MissingAuthenticationToken(ServiceError):
    code = "MissingAuthenticationTokenException"
    http_status = 403

    def __init__(self, message: str = "Missing Authentication Token") -> None:
        super().__init__(message)


class IncompleteSignature(ServiceError):
    code = "IncompleteSignatureException"
    http_status = 403


class InvalidSignature(ServiceError):
    code = "InvalidSignatureException"
    http_status = 403


class UnrecognizedClient(ServiceError):
    code = "UnrecognizedClientException"
    http_status = 403

    def __init__(self, message: str = "The security token included in the request is invalid.") -> None:
        super().__init__(message)


class AccessDenied(ServiceError):
    """A valid key whose owner may not run this operation (their groups, ``executions.access``)."""

    code = "AccessDeniedException"
    http_status = 403


class InvalidRequestContent(ServiceError):
    code = "InvalidRequestContentException"
    http_status = 400


class RequestTooLarge(ServiceError):
    code = "RequestTooLargeException"
    http_status = 413


class UnknownOperation(ServiceError):
    code = "UnknownOperationException"
    http_status = 404

    def __init__(self, message: str = "Unknown operation") -> None:
        super().__init__(message)


# --- rendering -------------------------------------------------------------------------


def request_id() -> str:
    return str(uuid.uuid4())


def error_response(exc: ServiceError) -> HttpResponse:
    """The AWS error response for a domain or HTTP-layer error."""
    kind = "Service" if exc.http_status >= 500 else "User"
    response = Response({"Type": kind, "message": exc.message}, status=exc.http_status)
    response["X-Amzn-ErrorType"] = exc.code
    return response


def _from_drf(exc: drf_exceptions.APIException) -> ServiceError:
    if isinstance(exc, drf_exceptions.MethodNotAllowed):
        return UnknownOperation(str(exc.detail))
    if isinstance(exc, drf_exceptions.ValidationError):
        return InvalidParameterValue(validation_message(exc.detail))
    if isinstance(exc, drf_exceptions.Throttled):
        return TooManyRequests("Rate exceeded")
    if isinstance(exc, (drf_exceptions.NotAuthenticated, drf_exceptions.AuthenticationFailed)):
        return MissingAuthenticationToken()
    return InvalidRequestContent(str(exc.detail))


def validation_message(detail: Any, prefix: str = "") -> str:
    """One readable line from a DRF ValidationError's nested detail."""
    if isinstance(detail, dict):
        return "; ".join(validation_message(value, f"{key}: ") for key, value in detail.items())
    if isinstance(detail, list):
        return "; ".join(validation_message(item, prefix) for item in detail)
    return f"{prefix}{detail}"


def aws_exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse:
    """DRF's exception handler for the API: everything becomes an AWS error shape."""
    if isinstance(exc, ServiceError):
        return error_response(exc)
    if isinstance(exc, drf_exceptions.APIException):
        return error_response(_from_drf(exc))
    # A bug, not a client error: log it, answer like AWS does (the SDK retries 5xx).
    logger.exception("unhandled error in the Lambda API: %r", exc)
    return error_response(ServiceError("Internal service error"))
