"""Human-in-the-loop document approval.

Demonstrates ``wait_for_callback``: the execution prepares a document, asks a
reviewer for a decision and suspends (no worker is busy) for up to 24 hours.
The reviewer's answer completes the callback with a JSON decision::

    {"approved": true, "comments": "Looks good", "reviewer": "rev@example.com"}
    {"approved": false, "reason": "Missing figures", "reviewer": "rev@example.com"}

Approved documents are finalized (published); rejected ones are archived,
and so are documents nobody decided on in time (CallbackTimeoutError) or
whose approval was withdrawn (the callback was failed).

The submitter puts the request in the approvals inbox of the reviewers
(``approvals.handler_api.request_approval``), which e-mails each of them a
personal link; their decision completes the callback. Run on another backend
(the SDK's test runner), the callback is not this service's: there is no inbox,
and the decision arrives through the callback API instead.

Input (all optional): ``document_id``, ``title``, ``author``, ``reviewer``
(the name reported when nobody decides), ``reviewers`` (user or group names,
default: ``[reviewer]`` if given, else the "approvers" group),
``required_approvals`` (default 1), ``approval_timeout_seconds`` (default
86400, at most 86400), ``faults``, ``max_attempts``, ``retry_delay_seconds``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_durable_execution_sdk_python import (
    CallbackError,
    CallbackTimeoutError,
    DurableContext,
    StepContext,
    durable_execution,
    durable_step,
    durable_wait_for_callback,
)
from aws_durable_execution_sdk_python.config import Duration, WaitForCallbackConfig
from aws_durable_execution_sdk_python.types import WaitForCallbackContext

from approvals import handler_api
from examples.inputs import as_event, int_field, key_field, text_field
from examples.policies import retrying_step, transient_retry
from examples.services import Approvals, Documents, Faults, TransientServiceError
from executions.engine.callback_ids import hash_callback_id

APPROVAL_WINDOW_SECONDS = 24 * 3600
DEFAULT_REVIEWERS = ("approvers",)


@dataclass(frozen=True)
class Request:
    document_id: str
    title: str
    author: str
    reviewer: str
    reviewers: tuple[str, ...]
    required: int
    faults: Faults


def read_request(event: dict[str, Any], context: DurableContext) -> Request:
    return Request(
        document_id=key_field(event, "document_id", context, "doc"),
        title=text_field(event, "title", "Q3 supplier contract"),
        author=text_field(event, "author", "author@example.com"),
        reviewer=text_field(event, "reviewer", "reviewer@example.com"),
        reviewers=read_reviewers(event),
        required=int_field(event, "required_approvals", 1, minimum=1, maximum=10),
        faults=Faults.from_input(event),
    )


def read_reviewers(event: dict[str, Any]) -> tuple[str, ...]:
    raw = event.get("reviewers")
    if raw is None:
        return (text_field(event, "reviewer", ""),) if "reviewer" in event else DEFAULT_REVIEWERS
    if not isinstance(raw, list) or not raw or not all(isinstance(name, str) and name for name in raw):
        raise ValueError("reviewers must be a non-empty list of user or group names")
    return tuple(raw)


@durable_step
def prepare_document(step: StepContext, request: Request) -> dict[str, Any]:
    return Documents(request.faults).prepare(request.document_id, request.title, request.author)


@durable_wait_for_callback
def request_approval(
    callback_id: str,
    context: WaitForCallbackContext,
    request: Request,
    document: dict[str, Any],
    timeout: int,
) -> None:
    """Put the decision in the reviewers' inbox (each is e-mailed a personal link too).

    Safe to run again: the approvals app keeps one request per callback id.
    """
    Approvals(request.faults).request(
        request.document_id, hash_callback_id(callback_id), request.reviewers, request.title
    )
    try:
        handler_api.request_approval(
            callback_id,
            title=f"Publish: {request.title}",
            summary=(
                f"{request.author} asks to publish {request.title} ({document['pages']} pages). "
                "Approve to publish it; reject (with a reason) to archive it."
            ),
            document=document,
            reviewers=list(request.reviewers),
            required=request.required,
            expires_in=timeout,
        )
    except handler_api.CallbackNotFound:
        return  # not our callback (another backend): it is answered through the callback API
    except handler_api.DeliveryError as error:
        raise TransientServiceError(str(error)) from error  # only the unsent e-mails go again


@durable_step
def finalize_document(step: StepContext, request: Request, reviewer: str) -> dict[str, Any]:
    return Documents(request.faults).finalize(request.document_id, reviewer)


@durable_step
def archive_document(step: StepContext, request: Request, reason: str) -> dict[str, Any]:
    return Documents(request.faults).archive(request.document_id, reason)


def parse_decision(raw: object, default_reviewer: str) -> dict[str, Any]:
    """The reviewer's decision from the callback payload (JSON text by default).

    A payload that is not a decision counts as a rejection with a reason that
    says so: the document is archived rather than published unreviewed.
    """
    try:
        decision = json.loads(raw) if isinstance(raw, str | bytes | bytearray) else raw
    except ValueError:
        decision = None
    if not isinstance(decision, Mapping) or not isinstance(decision.get("approved"), bool):
        return {
            "approved": False,
            "reason": "unreadable decision payload",
            "reviewer": default_reviewer,
        }
    reviewer = str(decision.get("reviewer") or default_reviewer)
    if decision["approved"]:
        return {
            "approved": True,
            "comments": str(decision.get("comments", "")),
            "reviewer": reviewer,
        }
    return {
        "approved": False,
        "reason": str(decision.get("reason", "rejected")),
        "reviewer": reviewer,
    }


def approval_timeout(event: dict[str, Any]) -> int:
    return int_field(
        event,
        "approval_timeout_seconds",
        APPROVAL_WINDOW_SECONDS,
        minimum=1,
        maximum=APPROVAL_WINDOW_SECONDS,
    )


def await_decision(
    context: DurableContext, event: dict[str, Any], request: Request, document: dict[str, Any]
) -> dict[str, Any]:
    """Suspend until the reviewer decides; no decision in time, or a withdrawn
    request, counts as "not approved" with its own status."""
    timeout = approval_timeout(event)
    config = WaitForCallbackConfig(
        timeout=Duration.from_seconds(timeout), retry_strategy=transient_retry(event)
    )
    unanswered = {"approved": False, "reviewer": request.reviewer}
    try:
        raw = context.wait_for_callback(
            request_approval(request, document, timeout), name="await-approval", config=config
        )
    except CallbackTimeoutError:
        return {"status": "expired", **unanswered, "reason": f"no decision within {timeout} s"}
    except CallbackError as error:
        return {"status": "withdrawn", **unanswered, "reason": error.message or "withdrawn"}
    decision = parse_decision(raw, request.reviewer)
    return {"status": "approved" if decision["approved"] else "rejected", **decision}


@durable_execution
def handler(event: dict[str, Any] | None, context: DurableContext) -> dict[str, Any]:
    """Prepare, wait for a reviewer, then finalize or archive."""
    event = as_event(event)
    request = read_request(event, context)
    retrying = retrying_step(event)
    prepared = context.step(prepare_document(request), name="prepare-document", config=retrying)
    document = {key: prepared[key] for key in ("document_id", "title", "pages")}
    decision = await_decision(context, event, request, prepared)
    if decision["approved"]:
        finalize = finalize_document(request, decision["reviewer"])
        published = context.step(finalize, name="finalize-document", config=retrying)
        return {**decision, **document, **published}
    archive = archive_document(request, decision["reason"])
    archived = context.step(archive, name="archive-document", config=retrying)
    return {**decision, **document, "archive_id": archived["archive_id"]}
