"""The durable service's tables: functions, executions, operations, history, invocations.

Operations keep every field of the wire ``Operation`` (docs/api.md, Operations) in columns,
so the checkpoint path can validate and rebuild the wire shape without parsing JSON
blobs. Executions carry the lease and wake-up columns the scheduler claims on.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from django.conf import settings
from django.db import models
from django.db.models import ExpressionWrapper, Q

from executions.queries.text_search import TRIGRAM_MIN_LENGTH, ILike, PostgresTrigramIndex, like_pattern

# The vocabulary's names most callers import from here (re-exported).
from executions.vocabulary import ACTIVE_EXECUTION_STATUSES
from executions.vocabulary import TERMINAL_EXECUTION_STATUSES as TERMINAL_EXECUTION_STATUSES
from executions.vocabulary import ExecutionStatus as ExecutionStatus
from executions.vocabulary import OperationStatus as OperationStatus
from executions.vocabulary import OperationSubType as OperationSubType
from executions.vocabulary import OperationType as OperationType

# Lambda's function configuration defaults and bounds (per invocation).
DEFAULT_FUNCTION_TIMEOUT_SECONDS = 300
DEFAULT_FUNCTION_MEMORY_MB = 512
FUNCTION_TIMEOUT_RANGE = (1, 900)
FUNCTION_MEMORY_RANGE = (128, 10_240)
# Execution labels (the business name people know an execution by) and the function
# setting that names the input field they come from.
LABEL_MAX_LENGTH = 200
LABEL_FIELD_MAX_LENGTH = 128


class Function(models.Model):
    """A registered handler: durable (replayed by the engine) or plain (called once)."""

    name = models.CharField(max_length=64, unique=True)
    handler = models.CharField(max_length=255, help_text="Import path, module:attr")
    durable = models.BooleanField(default=True)
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    version = models.PositiveIntegerField(default=1)
    execution_timeout = models.PositiveIntegerField(
        default=settings.DURABLE_DEFAULT_EXECUTION_TIMEOUT_SECONDS,
        help_text="Seconds; 1 to 31,622,400",
    )
    retention_days = models.PositiveSmallIntegerField(default=14)
    # The current version's Lambda function configuration (copied to FunctionVersion).
    timeout_seconds = models.PositiveIntegerField(
        default=DEFAULT_FUNCTION_TIMEOUT_SECONDS, help_text="Seconds per invocation; 1 to 900"
    )
    memory_mb = models.PositiveIntegerField(
        default=DEFAULT_FUNCTION_MEMORY_MB, help_text="MB per invocation; 128 to 10,240"
    )
    environment = models.JSONField(default=dict, blank=True, help_text="Environment variables")
    # The input field whose value labels each execution in the console ("order_id", or a
    # dotted path into nested objects: "customer.id"); read once, at start (Execution.label).
    # db_default too: bulk loaders (bench/console_seed.py) insert rows without naming it.
    label_field = models.CharField(
        max_length=LABEL_FIELD_MAX_LENGTH,
        blank=True,
        default="",
        db_default="",
        help_text="Input field whose value labels each execution (e.g. order_id, or customer.id)",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class FunctionVersion(models.Model):
    """The handler path a function had at each version; executions pin one."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    handler = models.CharField(max_length=255)
    timeout_seconds = models.PositiveIntegerField(default=DEFAULT_FUNCTION_TIMEOUT_SECONDS)
    memory_mb = models.PositiveIntegerField(default=DEFAULT_FUNCTION_MEMORY_MB)
    environment = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["function", "version"], name="function_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.function.name}:{self.version}"


class ExecutionQuerySet(models.QuerySet["Execution"]):
    """Chainable filters over executions; ``executions.queries.console`` composes them.

    Each filter says which index serves it on PostgreSQL (see ``Execution.Meta``).
    """

    def with_statuses(self, statuses: Iterable[str]) -> ExecutionQuerySet:
        """Any of ``statuses``; all executions when empty. (status, started_at) index."""
        wanted = list(dict.fromkeys(statuses))
        if not wanted:
            return self
        if len(wanted) == 1:
            return self.filter(status=wanted[0])
        return self.filter(status__in=wanted)

    def open(self) -> ExecutionQuerySet:
        """RUNNING or PAUSED: not finished yet."""
        return self.filter(status__in=ACTIVE_EXECUTION_STATUSES)

    def of_function(self, name: str | None) -> ExecutionQuerySet:
        """Executions of the function called ``name`` (any version). (function, started_at) index.

        A scalar subquery rather than a join: PostgreSQL then reads the function's
        executions in index order (newest first) instead of sorting all of them.
        """
        if not name:
            return self
        return self.filter(function_id=models.Subquery(Function.objects.filter(name=name).values("pk")[:1]))

    def started_between(
        self, after: datetime.datetime | None = None, before: datetime.datetime | None = None
    ) -> ExecutionQuerySet:
        """Started at or after ``after`` and before ``before`` (either may be None)."""
        queryset = self
        if after is not None:
            queryset = queryset.filter(started_at__gte=after)
        if before is not None:
            queryset = queryset.filter(started_at__lt=before)
        return queryset

    def ended_between(self, after: datetime.datetime, before: datetime.datetime) -> ExecutionQuerySet:
        """Ended in [after, before). Partial (ended_at, status) index."""
        return self.filter(ended_at__gte=after, ended_at__lt=before)

    def matching(self, search: str) -> ExecutionQuerySet:
        """By ARN, name or label: an ``arn:`` string is an exact ARN; anything else is a
        case-insensitive part of the name or the label (a prefix when shorter than 3
        characters, too short for trigrams). Unique ARN index; trigram indexes on name and label.
        """
        search = search.strip()
        if not search:
            return self
        if search.lower().startswith("arn:"):
            return self.filter(arn=search)
        pattern = like_pattern(search, prefix=len(search) < TRIGRAM_MIN_LENGTH)
        return self.filter(Q(ILike("name", pattern)) | Q(ILike("label", pattern)))

    def containing_text(self, text: str) -> ExecutionQuerySet:
        """``text`` (case-insensitive) inside the input or the result. Trigram indexes on
        input_payload and result; under 3 characters no index helps.
        """
        text = text.strip()
        if not text:
            return self
        pattern = like_pattern(text)
        return self.filter(Q(ILike("input_payload", pattern)) | Q(ILike("result", pattern)))


class Execution(models.Model):
    function = models.ForeignKey(Function, on_delete=models.PROTECT, related_name="executions")
    function_version = models.PositiveIntegerField()
    handler = models.CharField(max_length=255, help_text="Pinned at start; every replay uses it")
    name = models.CharField(max_length=64)
    invocation_id = models.CharField(max_length=64, help_text="Last ARN segment; EXECUTION op id")
    arn = models.CharField(max_length=512, unique=True)
    status = models.CharField(max_length=16, choices=ExecutionStatus.choices)
    input_payload = models.TextField(blank=True, default="")
    result = models.TextField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    tenant_id = models.CharField(max_length=256, blank=True, default="")
    # What people know it by: the value of the function's label_field in the input (set at
    # start), else the title of the first approval request it makes. Never parsed per view.
    label = models.CharField(max_length=LABEL_MAX_LENGTH, blank=True, default="", db_default="")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    execution_timeout = models.PositiveIntegerField()
    timeout_at = models.DateTimeField(null=True, blank=True)
    pause_details = models.JSONField(null=True, blank=True)

    # Invocation lifecycle: at most one invocation in flight, guarded by a lease.
    needs_invocation = models.BooleanField(default=False)
    invocation_due_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=128, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    invocation_count = models.PositiveIntegerField(default=0)
    consecutive_failures = models.PositiveSmallIntegerField(default=0)
    invalid_pending_count = models.PositiveSmallIntegerField(default=0)

    # Checkpoint token sequence within the current invocation.
    checkpoint_seq = models.PositiveIntegerField(default=0)
    # Change tracking: every operation change bumps change_seq; the handler has
    # seen everything up to seen_seq (the delta of docs/api.md).
    change_seq = models.PositiveBigIntegerField(default=0)
    seen_seq = models.PositiveBigIntegerField(default=0)
    operation_count = models.PositiveIntegerField(default=0)
    event_count = models.PositiveIntegerField(default=0)
    updated_operation_ids = models.JSONField(default=list, blank=True)
    # Earliest moment a timer of this execution (or its timeout) is due.
    wake_at = models.DateTimeField(null=True, blank=True)

    # ClientToken idempotency (single slot, docs/api.md).
    last_client_token = models.CharField(max_length=64, blank=True, default="")
    last_inbound_token = models.CharField(max_length=2048, blank=True, default="")
    last_response = models.JSONField(null=True, blank=True)
    last_client_token_at = models.DateTimeField(null=True, blank=True)

    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    # Who started it, when a person did (console, CLI key owner); approvals use it
    # to refuse self-approval.
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    parent_operation_id = models.CharField(max_length=64, blank=True, default="")

    objects = ExecutionQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["function", "name"], name="execution_name_unique")]
        indexes = [
            # Scheduler claims: due timers, due invocations, expired leases.
            models.Index(fields=["wake_at"], name="execution_wake_idx", condition=Q(wake_at__isnull=False)),
            models.Index(
                fields=["invocation_due_at"],
                name="execution_due_idx",
                condition=Q(needs_invocation=True),
            ),
            # Workers' claims, in the order they take them: executions resuming (invoked
            # before) ahead of first invocations, each oldest due first
            # (engine/invocations.py, invocation_claim_next).
            models.Index(
                ExpressionWrapper(Q(invocation_count=0), output_field=models.BooleanField()),
                "invocation_due_at",
                name="execution_claim_idx",
                condition=Q(needs_invocation=True),
            ),
            models.Index(
                fields=["lease_expires_at"],
                name="execution_lease_idx",
                condition=Q(lease_expires_at__isnull=False),
            ),
            models.Index(fields=["function", "-started_at"], name="execution_fn_started_idx"),
            models.Index(fields=["status", "-started_at"], name="execution_status_started_idx"),
            # Console list (executions.queries.console), newest first by (started_at, id):
            # unfiltered and time-range pages.
            models.Index(fields=["-started_at", "-id"], name="execution_started_id_idx"),
            # Function + status pages, and the status chip counts under a function filter.
            models.Index(fields=["function", "status", "-started_at", "-id"], name="execution_fn_status_idx"),
            # Activity chart: executions that ended in a window, by outcome.
            models.Index(
                fields=["ended_at", "status"],
                name="execution_ended_idx",
                condition=Q(ended_at__isnull=False),
            ),
            # Name search (part of a name, any case) and text search in input and result,
            # by ILIKE (ExecutionQuerySet.matching / containing_text).
            PostgresTrigramIndex(fields=["name"], name="execution_name_trgm_idx"),
            PostgresTrigramIndex(fields=["label"], name="execution_label_trgm_idx"),
            PostgresTrigramIndex(fields=["input_payload"], name="execution_input_trgm_idx"),
            PostgresTrigramIndex(fields=["result"], name="execution_result_trgm_idx"),
        ]
        permissions = [
            ("operate_execution", "Can start, stop, pause, resume, redrive and re-run executions"),
            ("complete_callback", "Can complete a pending callback by hand"),
        ]

    def __str__(self) -> str:
        return self.arn

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_EXECUTION_STATUSES


class Operation(models.Model):
    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="operations")
    operation_id = models.CharField(max_length=64)
    position = models.PositiveIntegerField(help_text="Start order within the execution")
    parent_id = models.CharField(max_length=64, blank=True, default="")
    name = models.CharField(max_length=256, blank=True, default="")
    type = models.CharField(max_length=16, choices=OperationType.choices)
    sub_type = models.CharField(max_length=32, blank=True, default="", choices=OperationSubType.choices)
    status = models.CharField(max_length=16, choices=OperationStatus.choices)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    touched_seq = models.PositiveBigIntegerField(default=0)

    input_payload = models.TextField(null=True, blank=True)  # EXECUTION input, invoke payload
    result = models.TextField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    attempt = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    replay_children = models.BooleanField(default=False)
    wait_seconds = models.PositiveIntegerField(null=True, blank=True)
    scheduled_end_at = models.DateTimeField(null=True, blank=True)

    callback_seed = models.CharField(max_length=64, blank=True, default="")
    callback_id_hash = models.CharField(max_length=64, null=True, blank=True, unique=True)
    callback_timeout = models.PositiveIntegerField(default=0)
    callback_heartbeat_timeout = models.PositiveIntegerField(default=0)
    callback_timeout_at = models.DateTimeField(null=True, blank=True)
    callback_heartbeat_at = models.DateTimeField(null=True, blank=True)

    invoke_function_name = models.CharField(max_length=256, blank=True, default="")
    invoke_tenant_id = models.CharField(max_length=256, blank=True, default="")
    invoke_dispatch_pending = models.BooleanField(default=False)
    # When the scheduler last sent a hint for a pending plain call (re-sent with backoff).
    invoke_dispatched_at = models.DateTimeField(null=True, blank=True)
    # A plain target's call claimed by a worker: after this moment without an outcome,
    # the scheduler ends the operation (the worker died; see services.plain_invoke_recover).
    invoke_claim_expires_at = models.DateTimeField(null=True, blank=True)

    # Earliest moment the engine must act on this op (wait end, retry, callback timeouts).
    timer_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "operation_id"], name="operation_id_unique")
        ]
        indexes = [
            models.Index(fields=["execution", "position"], name="operation_position_idx"),
            models.Index(fields=["execution", "touched_seq"], name="operation_touched_idx"),
            models.Index(
                fields=["execution", "timer_at"],
                name="operation_timer_idx",
                condition=Q(timer_at__isnull=False),
            ),
            models.Index(
                fields=["execution"],
                name="operation_invoke_pending_idx",
                condition=Q(invoke_dispatch_pending=True),
            ),
            # The scheduler's pass over plain calls whose worker died: only calls in flight.
            models.Index(
                fields=["invoke_claim_expires_at"],
                name="operation_invoke_claim_idx",
                condition=Q(type="CHAINED_INVOKE", status="STARTED", invoke_claim_expires_at__isnull=False),
            ),
            # Console: the callbacks people are waiting on, across all executions. Migration
            # 0005 also adds statistics on (status, type) so the planner reads it in order.
            models.Index(
                fields=["started_at", "id"],
                name="operation_open_callback_idx",
                condition=Q(type="CALLBACK", status="STARTED"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.name or self.operation_id}"


class HistoryEvent(models.Model):
    """One GetDurableExecutionHistory event (docs/api.md, Operations)."""

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="events")
    event_id = models.PositiveIntegerField()
    event_type = models.CharField(max_length=32)
    sub_type = models.CharField(max_length=32, blank=True, default="")
    operation_id = models.CharField(max_length=64, blank=True, default="")
    name = models.CharField(max_length=256, blank=True, default="")
    parent_id = models.CharField(max_length=64, blank=True, default="")
    timestamp = models.DateTimeField()
    details = models.JSONField(default=dict)

    class Meta:
        ordering = ["event_id"]
        constraints = [models.UniqueConstraint(fields=["execution", "event_id"], name="event_id_unique")]

    def __str__(self) -> str:
        return f"{self.event_id} {self.event_type}"


class InvocationOutcome(models.TextChoices):
    """How one handler run ended (``Invocation.outcome``)."""

    SUCCEEDED = "SUCCEEDED"  # returned Status SUCCEEDED
    FAILED = "FAILED"  # returned Status FAILED
    PENDING = "PENDING"  # returned Status PENDING: suspended, to be re-invoked
    INVALID = "INVALID"  # returned something that is not an invocation output
    ERROR = "ERROR"  # raised (a Lambda function error)
    TIMEOUT = "TIMEOUT"  # ran past the function's Timeout; its sandbox was killed
    CRASH = "CRASH"  # its sandbox process exited or was killed by a signal
    OOM = "OOM"  # its sandbox went past the function's MemorySize and was killed
    LOST = "LOST"  # its worker stopped renewing the lease (the whole worker died)


class Invocation(models.Model):
    """One run of the handler for an execution."""

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="invocations")
    number = models.PositiveIntegerField()
    request_id = models.CharField(max_length=64)
    worker = models.CharField(max_length=128, blank=True, default="")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, blank=True, default="", choices=InvocationOutcome.choices)
    error = models.JSONField(null=True, blank=True)
    # The sandbox child process that ran the handler, and the most memory it was seen
    # to use beyond its idle baseline (sampled by the supervisor), when known.
    sandbox_pid = models.PositiveIntegerField(null=True, blank=True)
    memory_used_mb = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["number"]
        constraints = [models.UniqueConstraint(fields=["execution", "number"], name="invocation_unique")]

    def __str__(self) -> str:
        return f"invocation {self.number} of {self.execution_id}"


class AccessKey(models.Model):
    """An access key for the Lambda-compatible API (SigV4-signed requests).

    The secret is needed in the clear to verify signatures, so it is stored
    encrypted (``executions.api.access_keys``) rather than hashed; it is shown once,
    at creation.
    """

    access_key_id = models.CharField(max_length=20, unique=True)
    secret_encrypted = models.TextField()
    description = models.CharField(max_length=256, blank=True, default="")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="access_keys",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.access_key_id

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class AuditChannel(models.TextChoices):
    CONSOLE = "console"
    API = "api"
    CLI = "cli"
    SYSTEM = "system"
    # A signed link in an e-mail (approvals): the person acted without logging in.
    EMAIL = "email"


class AuditEntry(models.Model):
    """Who did what, when, and through which channel: one row per operator action."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, help_text="User name or access key id, kept")
    channel = models.CharField(max_length=16, choices=AuditChannel.choices)
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=512, blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["-created_at"], name="audit_created_idx"),
            models.Index(fields=["action", "-created_at"], name="audit_action_idx"),
            models.Index(fields=["actor_name", "-created_at"], name="audit_actor_idx"),
            models.Index(fields=["target"], name="audit_target_idx"),
        ]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.target}"


class BulkJobStatus(models.TextChoices):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"


class BulkJob(models.Model):
    """A stop or redrive of many executions, run in the background with visible progress.

    The targets are fixed when the job is created (a selection, or what a filter
    matched then), so executions started afterwards are never swept up, and a job
    interrupted by a restart can continue from ``processed``.
    """

    ACTIONS = (("stop", "Stop"), ("redrive", "Redrive"))

    action = models.CharField(max_length=16, choices=ACTIONS)
    status = models.CharField(max_length=16, choices=BulkJobStatus.choices, default=BulkJobStatus.PENDING)
    reason = models.TextField(blank=True, default="")
    # Redrive only: whether interrupted operations (which may have run) run again.
    rerun_interrupted = models.BooleanField(default=False)
    scope = models.CharField(max_length=16, help_text="selection or filter")
    query = models.TextField(blank=True, default="", help_text="The list filter, as a query string")
    target_ids = models.JSONField(default=list)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    # One entry per target that was skipped or failed: {"id", "arn", "outcome", "message"}.
    problems = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_name = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Moved forward with every chunk of targets its runner commits (executions.bulk_jobs).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The runner working on it (host:pid:id); a runner that finds another name here stops.
    claimed_by = models.CharField(max_length=128, blank=True, default="")
    # How many runners claimed it: more than one means it was resumed after a crash.
    runs = models.PositiveSmallIntegerField(default=0)
    # When a runner was last asked for (at creation, then by the scheduler for a stale job).
    dispatched_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The scheduler's look for jobs nobody runs, every tick: only unfinished ones are in it.
            models.Index(
                fields=["status"],
                name="bulkjob_unfinished_idx",
                condition=Q(status__in=["PENDING", "RUNNING"]),
            ),
        ]

    def __str__(self) -> str:
        return f"bulk {self.action} #{self.pk} ({self.processed}/{self.total})"

    @property
    def is_finished(self) -> bool:
        return self.status in (BulkJobStatus.DONE, BulkJobStatus.FAILED)

    @property
    def percent(self) -> int:
        return 100 if not self.total else int(100 * self.processed / self.total)
