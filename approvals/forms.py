"""The decision form: approve or reject, with a comment (a reason is required to reject)."""

from __future__ import annotations

from typing import Any

from django import forms

from approvals.models import Outcome
from approvals.services import MAX_COMMENT_CHARS


class DecisionForm(forms.Form):
    outcome = forms.ChoiceField(
        choices=[(Outcome.APPROVE, "Approve"), (Outcome.REJECT, "Reject")],
        widget=forms.RadioSelect,
        error_messages={"required": "Choose Approve or Reject."},
    )
    comment = forms.CharField(
        label="Comment",
        required=False,
        max_length=MAX_COMMENT_CHARS,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Shown to the requester; required when rejecting (it becomes the reason).",
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("outcome") == Outcome.REJECT and not cleaned.get("comment"):
            self.add_error("comment", "Say why you reject it: the reason goes back to the requester.")
        return cleaned
