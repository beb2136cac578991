"""The side-effect ledger the simulated services write to.

Every call a demo service makes is one row, so tests and the console can
count effects across processes and replays: "the card was charged exactly
once", "inventory was reserved once although the payment step retried".
Rows are only ever appended; nothing updates or deletes them.
"""

from __future__ import annotations

from django.db import models


class LedgerEntry(models.Model):
    """One side effect (or one attempt at one) of a simulated service."""

    ATTEMPT = "attempt"

    service = models.CharField(max_length=40)
    action = models.CharField(max_length=60)
    # The business or idempotency key the effect belongs to (an order id, a
    # booking id, "job-1:batch-3"). Attempt rows use "<fault point>:<key>".
    key = models.CharField(max_length=200)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("id",)
        indexes = (models.Index(fields=["service", "action", "key"], name="examples_ledger_lookup"),)
        verbose_name_plural = "ledger entries"

    def __str__(self) -> str:
        return f"{self.service}.{self.action} {self.key}"


class FaultSwitch(models.Model):
    """An operator's override for one fault point: ``disabled`` turns its injected faults off.

    Faults are planned per execution in its input; a switch lets an operator
    "fix the outage" for executions already running, so a redrive succeeds.
    """

    point = models.CharField(max_length=60, unique=True)
    disabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.point}: {'off' if self.disabled else 'on'}"
