"""Forms of the console's admin pages (users, API keys); ``executions.accounts`` does the work."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.contrib.auth.validators import UnicodeUsernameValidator

from executions.accounts import CONSOLE_GROUPS

GROUP_HELP = {
    "admins": "everything, including users, API keys and functions",
    "operators": "start, stop, redrive, complete callbacks, every approval request",
    "approvers": "their own approvals inbox",
    "viewers": "read executions and functions",
}
GROUP_CHOICES = [(name, f"{name}: {GROUP_HELP.get(name, '')}") for name in CONSOLE_GROUPS]


class GroupsForm(forms.Form):
    groups = forms.MultipleChoiceField(
        choices=GROUP_CHOICES, required=False, widget=forms.CheckboxSelectMultiple, label="Groups"
    )


class UserCreateForm(GroupsForm):
    """A new user with an initial password; the validators run in ``accounts.user_create``."""

    username = forms.CharField(max_length=150, validators=[UnicodeUsernameValidator()])
    email = forms.EmailField(required=False)
    password1 = forms.CharField(
        label="Initial password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 8 characters, not common, not all digits, not like the user name. "
        "Hand it over in person or through a password manager, not by e-mail.",
    )
    password2 = forms.CharField(
        label="Initial password again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    field_order = ["username", "email", "password1", "password2", "groups"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("password1") and data.get("password2") and data["password1"] != data["password2"]:
            self.add_error("password2", "The two passwords differ.")
        return data


class OwnerChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: Any) -> str:
        user: User = obj
        return user.get_username()


class KeyCreateForm(forms.Form):
    """Who the key acts as and what it is for; the secret is made by the service."""

    description = forms.CharField(max_length=256, help_text="What uses it, e.g. “CI deploys”.")
    owner = OwnerChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        required=False,
        help_text="The key acts with this person's groups, and stops working when they are deactivated.",
    )

    def __init__(self, *args: Any, allow_ownerless: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        owner = self.fields["owner"]
        owner.required = not allow_ownerless
        owner.empty_label = "no owner: the deployment's admin key" if allow_ownerless else None  # type: ignore[attr-defined]
