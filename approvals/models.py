"""Approval requests and e-mail verifications, each tied to one pending callback.

Callback ids are bearer secrets: like the engine, these tables keep only their
SHA-256 (``callback_id_hash``) and a link to the CALLBACK operation, whose seed
derives the id again when a decision completes it.

Stored statuses only ever move away from "pending" inside ``approvals.services``.
A pending row can still be past its time (the callback timed out, the execution
ended, the request's own expiry passed): ``state()`` and the QuerySets derive
that, so nothing has to sweep the tables for the inbox to be right.
"""

from __future__ import annotations

import datetime

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Exists, OuterRef, Q

from executions.models import Execution, ExecutionStatus, Operation
from executions.vocabulary import OperationStatus

LIVE_EXECUTION_STATUSES = (ExecutionStatus.RUNNING, ExecutionStatus.PAUSED)


class RequestStatus(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class Outcome(models.TextChoices):
    APPROVE = "approve"
    REJECT = "reject"


class DecisionChannel(models.TextChoices):
    INBOX = "inbox", "Inbox"
    EMAIL = "email", "E-mail link"


def _still_waiting(now: datetime.datetime, prefix: str = "") -> Q:
    """The callback can still be completed and the row's own deadline has not passed."""
    return Q(
        **{
            f"{prefix}expires_at__gt": now,
            f"{prefix}operation__status": OperationStatus.STARTED,
            f"{prefix}execution__status__in": LIVE_EXECUTION_STATUSES,
        }
    )


def closed_reason(
    operation: Operation | None, execution: Execution, expires_at: datetime.datetime, now: datetime.datetime
) -> str:
    """Why a pending row can no longer be answered, or "" while it can."""
    if operation is None:
        return "The callback no longer exists (the execution was redriven)."
    if operation.status == OperationStatus.TIMED_OUT:
        return "The callback timed out."
    if operation.status != OperationStatus.STARTED:
        return "The callback was completed outside the inbox."
    if execution.status not in LIVE_EXECUTION_STATUSES:
        return f"The execution ended ({execution.status})."
    if expires_at <= now:
        return "The request expired."
    return ""


class ApprovalRequestQuerySet(models.QuerySet):
    def open(self, now: datetime.datetime) -> ApprovalRequestQuerySet:
        return self.filter(_still_waiting(now), status=RequestStatus.PENDING)

    def expired(self, now: datetime.datetime) -> ApprovalRequestQuerySet:
        lapsed = Q(status=RequestStatus.PENDING) & ~_still_waiting(now)
        return self.filter(Q(status=RequestStatus.EXPIRED) | lapsed)

    def decided(self) -> ApprovalRequestQuerySet:
        return self.filter(status__in=(RequestStatus.APPROVED, RequestStatus.REJECTED))

    def assigned_to(self, user: models.Model) -> ApprovalRequestQuerySet:
        """Requests naming the user, directly or through one of their groups."""
        reviewers = ApprovalReviewer.objects.filter(request=OuterRef("pk")).filter(
            Q(user=user) | Q(group__user=user)
        )
        return self.filter(Exists(reviewers))

    def with_vote_by(self, user: models.Model) -> ApprovalRequestQuerySet:
        return self.annotate(voted=Exists(Decision.objects.filter(request=OuterRef("pk"), reviewer=user)))


class ApprovalRequest(models.Model):
    """A decision wanted from people; answering it completes one callback."""

    callback_id_hash = models.CharField(max_length=64, unique=True)
    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="approval_requests")
    # SET_NULL: a redrive deletes a timed-out callback, but the request and its
    # decisions stay on record.
    operation = models.OneToOneField(
        Operation, null=True, blank=True, on_delete=models.SET_NULL, related_name="approval_request"
    )
    title = models.CharField(max_length=200)
    summary = models.TextField(blank=True, default="")
    document = models.JSONField(null=True, blank=True)
    required = models.PositiveSmallIntegerField(default=1, help_text="Approvals needed")
    allow_self_approval = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=RequestStatus.choices, default=RequestStatus.PENDING)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by_name = models.CharField(max_length=150, blank=True, default="")
    closed_reason = models.CharField(max_length=200, blank=True, default="")
    # What the callback was completed with (the handler's view of the decision).
    result = models.JSONField(null=True, blank=True)

    objects = ApprovalRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "expires_at"], name="approval_status_expiry_idx")]
        permissions = [
            ("use_inbox", "Can use the approvals inbox (requests assigned to them)"),
            ("view_all_requests", "Can see every approval request"),
            ("decide_any_request", "Can decide approval requests not assigned to them"),
        ]

    def __str__(self) -> str:
        return f"approval #{self.pk}: {self.title}"

    def state(self, now: datetime.datetime) -> str:
        """The stored status, or "expired" for a pending request that can no longer be decided."""
        if self.status != RequestStatus.PENDING:
            return self.status
        return RequestStatus.EXPIRED if self.lapsed_reason(now) else RequestStatus.PENDING

    def lapsed_reason(self, now: datetime.datetime) -> str:
        if self.status == RequestStatus.EXPIRED:
            return self.closed_reason or "The request expired."
        return closed_reason(self.operation, self.execution, self.expires_at, now)


class ApprovalReviewer(models.Model):
    """One name the handler gave as a reviewer: a user or a group."""

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="reviewers")
    name = models.CharField(max_length=150, help_text="As the handler gave it")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.CASCADE, related_name="+")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(user__isnull=False, group__isnull=True) | Q(user__isnull=True, group__isnull=False)
                ),
                name="approval_reviewer_user_xor_group",
            ),
            models.UniqueConstraint(fields=["request", "user"], name="approval_reviewer_user_unique"),
            models.UniqueConstraint(fields=["request", "group"], name="approval_reviewer_group_unique"),
        ]

    def __str__(self) -> str:
        return self.name


class Decision(models.Model):
    """One reviewer's answer; the request is decided once enough of them agree."""

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="decisions")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewer_name = models.CharField(max_length=150)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    channel = models.CharField(max_length=16, choices=DecisionChannel.choices)
    comment = models.TextField(blank=True, default="")
    decided_at = models.DateTimeField()

    class Meta:
        ordering = ["decided_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["request", "reviewer"], name="decision_one_per_reviewer")
        ]

    def __str__(self) -> str:
        return f"{self.reviewer_name} {self.outcome}"


class ReviewerNotification(models.Model):
    """The e-mail telling one reviewer about a request, with their personal link."""

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="notifications")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    email = models.EmailField()
    # Random per link: it makes the signed token unique, and the used-token row
    # is keyed on it.
    nonce = models.CharField(max_length=32)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["request", "user"], name="notification_one_per_reviewer")
        ]

    def __str__(self) -> str:
        return f"notify {self.email} of #{self.request_id}"


class VerificationStatus(models.TextChoices):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    EXPIRED = "expired"


class EmailVerificationQuerySet(models.QuerySet):
    def expired(self, now: datetime.datetime) -> EmailVerificationQuerySet:
        lapsed = Q(status=VerificationStatus.PENDING) & ~_still_waiting(now)
        return self.filter(Q(status=VerificationStatus.EXPIRED) | lapsed)


class EmailVerification(models.Model):
    """An address to verify: the link in the e-mail completes the callback with ``true``."""

    callback_id_hash = models.CharField(max_length=64, unique=True)
    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="email_verifications")
    operation = models.OneToOneField(
        Operation, null=True, blank=True, on_delete=models.SET_NULL, related_name="email_verification"
    )
    email = models.EmailField()
    nonce = models.CharField(max_length=32)
    status = models.CharField(
        max_length=16, choices=VerificationStatus.choices, default=VerificationStatus.PENDING
    )
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    closed_reason = models.CharField(max_length=200, blank=True, default="")

    objects = EmailVerificationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"verify {self.email}"

    def state(self, now: datetime.datetime) -> str:
        if self.status != VerificationStatus.PENDING:
            return self.status
        return VerificationStatus.EXPIRED if self.lapsed_reason(now) else VerificationStatus.PENDING

    def lapsed_reason(self, now: datetime.datetime) -> str:
        if self.status == VerificationStatus.EXPIRED:
            return self.closed_reason or "The link expired."
        return closed_reason(self.operation, self.execution, self.expires_at, now)


class UsedLinkToken(models.Model):
    """A signed link that has done its job; the unique digest makes every link single-use."""

    digest = models.CharField(max_length=64, unique=True, help_text="SHA-256 of purpose and nonce")
    purpose = models.CharField(max_length=16)
    used_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.purpose} {self.digest[:12]}"
