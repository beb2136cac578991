"""Domain errors, each carrying the AWS error code and HTTP status it maps to.

The Lambda-compatible API renders them as AWS error shapes; the in-process
service client turns them into the SDK's CheckpointError; the CLI prints them.
"""

from __future__ import annotations


class ServiceError(Exception):
    code = "ServiceException"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParameterValue(ServiceError):
    code = "InvalidParameterValueException"
    http_status = 400


class InvalidCheckpointToken(InvalidParameterValue):
    """Stale, foreign or malformed token: the one 4xx the SDK retries."""

    def __init__(self, detail: str = "") -> None:
        # The exact "Invalid checkpoint token" prefix is what the SDK matches on.
        super().__init__("Invalid checkpoint token" + (f": {detail}" if detail else ""))


class ResourceNotFound(ServiceError):
    code = "ResourceNotFoundException"
    http_status = 404


class CallbackTimeout(ServiceError):
    code = "CallbackTimeoutException"
    http_status = 400

    def __init__(self, message: str = "") -> None:
        super().__init__(
            message
            or "The callback ID token has either expired or the callback associated "
            "with the token has already been closed."
        )


class DurableExecutionAlreadyStarted(ServiceError):
    code = "DurableExecutionAlreadyStartedException"
    http_status = 409


class ResourceConflict(ServiceError):
    code = "ResourceConflictException"
    http_status = 409


class TooManyRequests(ServiceError):
    code = "TooManyRequestsException"
    http_status = 429
