"""Completing a callback by hand: what the handler waiting on it expects to receive.

A callback the approvals app answers has a known result shape
(``approvals.services._callback_payload`` and the verification link): the console's
form starts from it, so an operator who decides in a reviewer's place sends what a
reviewer would have, not ``{}`` that the handler then reads as "unreadable decision".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from approvals.selectors import decisions_for_operations
from executions.models import Operation


@dataclass(frozen=True)
class ExpectedResult:
    kind: str  # "approval", "email-verification", or "" when nothing is known
    initial: str  # the form's starting JSON
    note: str  # what the handler reads, shown above the form


UNKNOWN = ExpectedResult("", "{}", "")


def expected_result(op: Operation, reviewer: str) -> ExpectedResult:
    """The result shape for ``op``'s callback, from the approval or verification behind it."""
    summary: Any = decisions_for_operations([op]).get(op.pk)
    if summary is None:
        return UNKNOWN
    if summary.kind == "approval":
        shape = {"approved": True, "comments": "", "reviewer": reviewer}
        note = (
            "An approval request: the handler reads approved (true or false), comments, or a reason "
            "when rejecting, and the reviewer, as the inbox sends them."
        )
        return ExpectedResult("approval", json.dumps(shape, indent=2), note)
    if summary.kind == "email-verification":
        note = "An e-mail verification: the link sends true once the address is confirmed."
        return ExpectedResult("email-verification", "true", note)
    return UNKNOWN
