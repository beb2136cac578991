"""Why an approvals action was refused, in words the person in front of it can act on."""

from __future__ import annotations


class ApprovalError(Exception):
    """Base class: the message is shown to the user as it is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- handler-side API -------------------------------------------------------------------


class CallbackNotFound(ApprovalError, LookupError):
    """The callback id is not one of this service's callbacks (or is not a callback yet)."""


class InvalidRequest(ApprovalError, ValueError):
    """The handler passed something unusable (no reviewers, a bad expiry, ...)."""


class UnknownReviewers(InvalidRequest):
    def __init__(self, names: list[str]) -> None:
        super().__init__("No user or group named " + ", ".join(repr(name) for name in names))
        self.names = names


class DeliveryError(ApprovalError):
    """The mail backend refused a message; calling again re-sends only what was not sent."""


# --- decisions --------------------------------------------------------------------------


class AlreadyDecided(ApprovalError):
    def __init__(self, status: str, by: str) -> None:
        who = f" by {by}" if by else ""
        super().__init__(f"This request was already {status}{who}.")
        self.status = status
        self.by = by


class RequestExpired(ApprovalError):
    """The callback timed out, the execution ended, or the request's own time ran out."""


class NotAReviewer(ApprovalError):
    def __init__(self) -> None:
        super().__init__("You are not one of the reviewers of this request.")


class SelfApprovalRefused(ApprovalError):
    def __init__(self) -> None:
        super().__init__("You started this execution, so someone else has to decide on it.")


class AlreadyVoted(ApprovalError):
    def __init__(self, outcome: str) -> None:
        verb = "approved" if outcome == "approve" else "rejected"
        super().__init__(f"You already {verb} this request; it is waiting for other reviewers.")


# --- signed links -----------------------------------------------------------------------


class LinkInvalid(ApprovalError):
    def __init__(self) -> None:
        super().__init__("This link is not valid. It may have been copied incompletely or altered.")


class LinkUsed(ApprovalError):
    def __init__(self) -> None:
        super().__init__("This link has already been used. Each link works once.")
