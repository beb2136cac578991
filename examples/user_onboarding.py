"""User onboarding: create the account, verify the e-mail address, set up the
profile in parallel, send a welcome e-mail.

Demonstrates:

- ``wait_for_callback`` with a long timeout (48 hours by default): the
  approvals app e-mails a signed, single-use verification link
  (``approvals.handler_api.send_verification_email``), and the user's
  confirmation on the page it opens completes the callback with ``true``. The
  execution costs nothing while it waits. (On another backend, such as the
  SDK's test runner, the callback is answered through the callback API.)
- The timeout path: ``CallbackTimeoutError`` sends a reminder and records the
  account as unverified instead of failing the execution.
- ``parallel``: three independent profile branches run concurrently, each a
  named branch with its own checkpointed step.

Input (all optional): ``email``, ``name``, ``plan`` (default "free"),
``verification_timeout_seconds`` (default 172800, at most 172800),
``faults``, ``max_attempts``, ``retry_delay_seconds``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aws_durable_execution_sdk_python import (
    CallbackTimeoutError,
    DurableContext,
    StepContext,
    durable_execution,
    durable_parallel_branch,
    durable_step,
    durable_wait_for_callback,
)
from aws_durable_execution_sdk_python.config import (
    Duration,
    ParallelConfig,
    WaitForCallbackConfig,
)
from aws_durable_execution_sdk_python.types import WaitForCallbackContext

from approvals import handler_api
from examples.inputs import as_event, execution_key, int_field, text_field
from examples.policies import retrying_step, transient_retry
from examples.services import Customers, Email, Faults, TransientServiceError
from executions.engine.callback_ids import hash_callback_id

VERIFICATION_WINDOW_SECONDS = 48 * 3600


@dataclass(frozen=True)
class Signup:
    email: str
    name: str
    plan: str
    faults: Faults


def read_signup(event: dict[str, Any], context: DurableContext) -> Signup:
    return Signup(
        email=text_field(event, "email", f"{execution_key(context, 'user')}@example.com"),
        name=text_field(event, "name", "Grace Hopper"),
        plan=text_field(event, "plan", "free"),
        faults=Faults.from_input(event),
    )


# --- account and verification ---------------------------------------------------------


@durable_step
def create_account(step: StepContext, signup: Signup) -> dict[str, Any]:
    return Customers(signup.faults).create_account(signup.email, signup.name)


@durable_wait_for_callback
def send_verification_email(
    callback_id: str, context: WaitForCallbackContext, signup: Signup, user_id: str, timeout: int
) -> None:
    """E-mail a verification link that expires with the callback; sent once per callback id."""
    Email(signup.faults).send(
        signup.email, "verify-email", user_id, callback_id_hash=hash_callback_id(callback_id)
    )
    try:
        handler_api.send_verification_email(callback_id, email=signup.email, expires_in=timeout)
    except handler_api.CallbackNotFound:
        return  # not our callback (another backend): it is answered through the callback API
    except handler_api.DeliveryError as error:
        raise TransientServiceError(str(error)) from error


@durable_step
def send_reminder(step: StepContext, signup: Signup, user_id: str) -> dict[str, Any]:
    return Email(signup.faults).send(signup.email, "verify-email-reminder", user_id)


@durable_step
def set_status(step: StepContext, signup: Signup, user_id: str, status: str) -> dict[str, Any]:
    return Customers(signup.faults).set_status(user_id, status)


def parse_verification(raw: object) -> dict[str, Any]:
    """Whatever the link handler reported: ``true`` from the approvals app's link page,
    a JSON object from other callers, or the raw text."""
    try:
        payload = json.loads(raw) if isinstance(raw, str | bytes | bytearray) else raw
    except ValueError:
        return {"raw": str(raw)}
    if payload is True:
        return {"confirmed": True, "method": "email-link"}
    return payload if isinstance(payload, dict) else {"raw": payload}


# --- profile set-up (parallel branches) ---------------------------------------------------


@durable_step
def update_profile(
    step: StepContext, signup: Signup, user_id: str, section: str, values: dict[str, Any]
) -> dict[str, Any]:
    return Customers(signup.faults).update_profile(user_id, section, values)


@durable_parallel_branch(name="create-profile")
def create_profile(
    context: DurableContext, event: dict[str, Any], signup: Signup, user_id: str
) -> dict[str, Any]:
    values = {"display_name": signup.name, "avatar": f"https://avatars.example.com/{user_id}.png"}
    return context.step(
        update_profile(signup, user_id, "profile", values),
        name="save-profile",
        config=retrying_step(event),
    )


@durable_parallel_branch(name="set-preferences")
def set_preferences(
    context: DurableContext, event: dict[str, Any], signup: Signup, user_id: str
) -> dict[str, Any]:
    values = {"newsletter": True, "timezone": "UTC", "language": "en"}
    return context.step(
        update_profile(signup, user_id, "preferences", values),
        name="save-preferences",
        config=retrying_step(event),
    )


@durable_parallel_branch(name="provision-workspace")
def provision_workspace(
    context: DurableContext, event: dict[str, Any], signup: Signup, user_id: str
) -> dict[str, Any]:
    values = {"plan": signup.plan, "workspace": f"ws-{user_id.split('-')[1]}", "seats": 1}
    return context.step(
        update_profile(signup, user_id, "workspace", values),
        name="save-workspace",
        config=retrying_step(event),
    )


@durable_step
def send_welcome(step: StepContext, signup: Signup, user_id: str) -> dict[str, Any]:
    return Email(signup.faults).send(signup.email, "welcome", user_id, plan=signup.plan)


# --- handler ---------------------------------------------------------------------------


def verification_timeout(event: dict[str, Any]) -> int:
    return int_field(
        event,
        "verification_timeout_seconds",
        VERIFICATION_WINDOW_SECONDS,
        minimum=1,
        maximum=VERIFICATION_WINDOW_SECONDS,
    )


def set_up_profile(
    context: DurableContext, event: dict[str, Any], signup: Signup, user_id: str
) -> dict[str, Any]:
    """Run the three profile branches in parallel; returns them by section."""
    sections = (create_profile, set_preferences, provision_workspace)
    branches = [branch(event, signup, user_id) for branch in sections]
    setup = context.parallel(branches, name="set-up-profile", config=ParallelConfig(max_concurrency=3))
    setup.throw_if_error()
    return {section["section"]: section for section in setup.get_results()}


@durable_execution
def handler(event: dict[str, Any] | None, context: DurableContext) -> dict[str, Any]:
    """Onboard one user; returns "active" or, after a timed-out verification, "unverified"."""
    event = as_event(event)
    signup = read_signup(event, context)
    retrying = retrying_step(event)
    account = context.step(create_account(signup), name="create-account", config=retrying)
    user_id = account["user_id"]
    timeout = verification_timeout(event)
    config = WaitForCallbackConfig(
        timeout=Duration.from_seconds(timeout), retry_strategy=transient_retry(event)
    )
    submitter = send_verification_email(signup, user_id, timeout)
    try:
        raw = context.wait_for_callback(submitter, name="verify-email", config=config)
    except CallbackTimeoutError:
        return unverified(context, event, signup, user_id)
    profile = set_up_profile(context, event, signup, user_id)
    welcome = context.step(send_welcome(signup, user_id), name="send-welcome-email", config=retrying)
    context.step(set_status(signup, user_id, "active"), name="activate-account", config=retrying)
    return {
        "status": "active",
        "user_id": user_id,
        "email": signup.email,
        "verified": True,
        "verification": parse_verification(raw),
        "profile": profile,
        "welcome_message_id": welcome["message_id"],
    }


def unverified(
    context: DurableContext, event: dict[str, Any], signup: Signup, user_id: str
) -> dict[str, Any]:
    """Nobody clicked the link in time: remind the user and keep the account unverified."""
    reminder = context.step(send_reminder(signup, user_id), name="send-reminder", config=retrying_step(event))
    context.step(
        set_status(signup, user_id, "unverified"),
        name="record-unverified",
        config=retrying_step(event),
    )
    return {
        "status": "unverified",
        "user_id": user_id,
        "email": signup.email,
        "verified": False,
        "reason": f"e-mail not verified within {verification_timeout(event)} s",
        "reminder_message_id": reminder["message_id"],
    }
