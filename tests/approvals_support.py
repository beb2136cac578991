"""Shared pieces of the approvals tests: a cast of users, test handlers, and engine helpers.

The handlers are real durable functions run by the production engine through
``tests.engine_driver``; their submitters call the approvals handler-side API
exactly as a user's handler would.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aws_durable_execution_sdk_python import CallbackTimeoutError, DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CallbackConfig, Duration, WaitForCallbackConfig
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import AbstractBaseUser, Group
from django.core import mail

from approvals import handler_api
from approvals.models import ApprovalRequest, EmailVerification
from executions.models import Execution
from executions.workers import handler_db
from tests.engine_driver import EngineDriver, engine_driver, refreshed, register, start

APPROVAL_FUNCTION = "approval-test"
VERIFY_FUNCTION = "verify-test"
FLAKY_FUNCTION = "approval-flaky-submitter"
BARE_FUNCTION = "bare-callback"
BARE_CALLBACK = "bare"


# --- the cast ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cast:
    alice: AbstractBaseUser  # approver
    bob: AbstractBaseUser  # approver
    carol: AbstractBaseUser  # approver, in a group of her own ("legal")
    operator: AbstractBaseUser
    admin: AbstractBaseUser  # in the admins group (not a superuser)
    viewer: AbstractBaseUser  # may view executions, has no inbox
    outsider: AbstractBaseUser  # no group at all


@functools.cache
def password_hash(password: str) -> str:
    """Hashed once per test process: PBKDF2 costs ~0.25 s a password, seven per cast. The
    hash is a real one, so a console server process logs these users in as any other."""
    return make_password(password)


def make_cast() -> Cast:
    users = get_user_model().objects

    def person(name: str, *groups: str) -> AbstractBaseUser:
        user = users.create_user(name, email=f"{name}@example.com")
        user.password = password_hash("pw-" + name)
        user.save(update_fields=["password"])
        for group in groups:
            user.groups.add(Group.objects.get_or_create(name=group)[0])
        return user

    return Cast(
        alice=person("alice", "approvers"),
        bob=person("bob", "approvers"),
        carol=person("carol", "approvers", "legal"),
        operator=person("oscar", "operators"),
        admin=person("ada", "admins"),
        viewer=person("victor", "viewers"),
        outsider=person("olga"),
    )


# --- handlers ------------------------------------------------------------------------------

# Submitter attempts per execution name, for the flaky submitter (handlers run in-process).
SUBMITTER_ATTEMPTS: dict[str, int] = {}


def _approval_submitter(event: dict[str, Any]) -> Any:
    def submit(callback_id: str, _context: Any) -> None:
        handler_api.request_approval(
            callback_id,
            title=event.get("title", "Publish the Q3 report"),
            summary=event.get("summary", "Please review the figures."),
            document=event.get("document", {"body": "Revenue grew.\nCosts fell.", "pages": 3}),
            reviewers=event.get("reviewers", ["approvers"]),
            expires_in=event.get("expires_in", 3600),
            required=event.get("required", 1),
            allow_self_approval=event.get("allow_self_approval", False),
        )

    return submit


@durable_execution
def approval_handler(event: Any, context: DurableContext) -> Any:
    """Waits for an approval; returns the decision, or {"timed_out": true}."""
    config = WaitForCallbackConfig(timeout=Duration.from_seconds(event.get("timeout", 3600)))
    try:
        raw = context.wait_for_callback(_approval_submitter(event), name="approval", config=config)
    except CallbackTimeoutError:
        return {"timed_out": True}
    return json.loads(raw)


@durable_execution
def verify_handler(event: Any, context: DurableContext) -> Any:
    def submit(callback_id: str, _context: Any) -> None:
        expires_in = event.get("expires_in", 600)
        handler_api.send_verification_email(callback_id, email=event["email"], expires_in=expires_in)

    config = WaitForCallbackConfig(timeout=Duration.from_seconds(event.get("timeout", 600)))
    try:
        return {"verified": json.loads(context.wait_for_callback(submit, name="verify", config=config))}
    except CallbackTimeoutError:
        return {"verified": False}


@durable_execution
def flaky_submitter_handler(event: Any, context: DurableContext) -> Any:
    """The submitter fails once after asking for the approval: the retry must not ask twice."""
    ask = _approval_submitter(event)

    def submit(callback_id: str, submit_context: Any) -> None:
        ask(callback_id, submit_context)
        key = event["key"]
        SUBMITTER_ATTEMPTS[key] = SUBMITTER_ATTEMPTS.get(key, 0) + 1
        if SUBMITTER_ATTEMPTS[key] == 1:
            raise RuntimeError("lost the connection after sending")

    retry = create_retry_strategy(RetryStrategyConfig(max_attempts=3, initial_delay=Duration.from_seconds(1)))
    config = WaitForCallbackConfig(timeout=Duration.from_seconds(3600), retry_strategy=retry)
    return json.loads(context.wait_for_callback(submit, name="approval", config=config))


@durable_execution
def bare_callback_handler(event: Any, context: DurableContext) -> Any:
    """A callback nobody asked anyone about yet: the tests call the handler-side API themselves."""
    config = CallbackConfig(timeout=Duration.from_hours(1))
    callback = context.create_callback(name=BARE_CALLBACK, config=config)
    return json.loads(callback.result())


def register_test_functions() -> None:
    register(APPROVAL_FUNCTION, approval_handler, timeout=7200)
    register(BARE_FUNCTION, bare_callback_handler, timeout=7200)
    register(VERIFY_FUNCTION, verify_handler, timeout=7200)
    register(FLAKY_FUNCTION, flaky_submitter_handler, timeout=7200)


@dataclass
class Flow:
    """An execution waiting for people, and what the approvals app made of it."""

    execution: Execution
    driver: EngineDriver

    def settle(self) -> Execution:
        self.driver.settle()
        return refreshed(self.execution)

    def finish(self) -> Execution:
        self.driver.run_until(lambda: refreshed(self.execution).is_terminal)
        return refreshed(self.execution)

    @property
    def request(self) -> ApprovalRequest:
        return ApprovalRequest.objects.get(execution=self.execution)

    @property
    def verification(self) -> EmailVerification:
        return EmailVerification.objects.get(execution=self.execution)


def running_driver() -> Iterator[EngineDriver]:
    register_test_functions()
    with engine_driver() as driver:
        yield driver
    handler_db.close()  # the handler-side API keeps a connection on its own thread


def start_flow(
    driver: EngineDriver,
    function: str,
    payload: dict[str, Any],
    *,
    started_by: AbstractBaseUser | None = None,
) -> Flow:
    """Start an execution (as ``started_by``, like the console does) and run it until it waits."""
    execution = start(function, payload)
    if started_by is not None:
        Execution.objects.filter(pk=execution.pk).update(started_by=started_by)
    flow = Flow(execution, driver)
    flow.settle()
    return flow


def result_of(execution: Execution) -> Any:
    assert execution.status == "SUCCEEDED", execution.error
    return json.loads(execution.result)


# --- e-mail --------------------------------------------------------------------------------

LINK = re.compile(r"https?://[^\s\"<>]+/approvals/(?:verify|review)/[^\s\"<>/]+/")


def links_in_outbox(to: str) -> list[str]:
    """The approvals links (paths) in the plain-text bodies sent to ``to``, oldest first."""
    found = []
    for message in mail.outbox:
        if to in message.to:
            found += [re.sub(r"^https?://[^/]+", "", url) for url in LINK.findall(message.body)]
    return found
