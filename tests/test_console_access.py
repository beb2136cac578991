"""Who may see and do what: every console page and action, for every group and for anonymous.

Groups (executions.access): admins and operators operate, viewers only look,
approvers see no executions at all; users without a group see nothing either.
Denied users get 403 and nothing changes; anonymous users are sent to log in;
a POST without a CSRF token is refused even for an operator.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.test import Client

from executions import services
from executions.models import AuditEntry, BulkJob, Execution, Function
from tests.console_support import PASSWORD, Cast, make_cast, register_demos

pytestmark = pytest.mark.django_db

LOOKERS = {"admin", "operator", "viewer"}
OPERATORS = {"admin", "operator"}
ADMINS = {"admin"}
ALL_ROLES = ("admin", "operator", "viewer", "approver", "nobody")


@dataclass(frozen=True)
class World:
    cast: Cast
    execution: Execution
    job: BulkJob


@pytest.fixture
def world() -> World:
    cast = make_cast()
    register_demos()
    execution = services.execution_start(function="document-approval", input_payload='{"document_id": "d-1"}')
    job = BulkJob.objects.create(
        action="stop",
        scope="selection",
        target_ids=[execution.execution.pk],
        total=1,
        created_at=execution.execution.started_at,
    )
    return World(cast, execution.execution, job)


PAGES = [
    ("/", LOOKERS),
    ("/executions/", LOOKERS),
    ("/executions/?status=RUNNING&function=document-approval&after=24h", LOOKERS),
    ("/executions/{pk}/", LOOKERS),
    ("/executions/{pk}/live/", LOOKERS),
    ("/executions/{pk}/history/?type=ExecutionStarted", LOOKERS),
    ("/executions/{pk}/download/input/", LOOKERS),
    ("/executions/{pk}/compare/", LOOKERS),
    ("/executions/{pk}/stop/", OPERATORS),
    ("/executions/{pk}/redrive/", OPERATORS),
    ("/executions/{pk}/rerun/", OPERATORS),
    ("/executions/bulk/{job}/", OPERATORS),
    ("/functions/", LOOKERS),
    ("/functions/booking/", LOOKERS),
    ("/functions/new/", ADMINS),
    ("/functions/booking/edit/", ADMINS),
    ("/functions/booking/disable/", ADMINS),
    ("/functions/booking/start/", OPERATORS),
    ("/audit/", OPERATORS),
    ("/faults/", LOOKERS),
]


def url(template: str, world: World) -> str:
    return template.format(pk=world.execution.pk, job=world.job.pk)


@pytest.mark.parametrize(("path", "allowed"), PAGES, ids=[p for p, _ in PAGES])
def test_pages_by_role(world: World, path: str, allowed: set[str]) -> None:
    for role in ALL_ROLES:
        response = world.cast.client(role).get(url(path, world))
        if path == "/" and role == "approver":  # lands on the approvals inbox instead
            assert response.status_code == 302 and response["Location"] == "/approvals/"
            continue
        expected = 200 if role in allowed else 403
        assert response.status_code == expected, f"{role} GET {path}: {response.status_code}"


@pytest.mark.parametrize(("path", "allowed"), PAGES, ids=[p for p, _ in PAGES])
def test_anonymous_is_sent_to_log_in(world: World, path: str, allowed: set[str]) -> None:
    response = Client().get(url(path, world))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


ACTIONS = [
    ("/executions/{pk}/stop/", {"reason": "test"}, OPERATORS),
    ("/executions/{pk}/pause/", {"reason": ""}, OPERATORS),
    ("/executions/{pk}/resume/", {}, OPERATORS),
    ("/executions/{pk}/redrive/", {"reason": "test"}, OPERATORS),
    ("/executions/{pk}/rerun/", {"input_payload": "{}"}, OPERATORS),
    ("/executions/{pk}/callbacks/nope/", {"outcome": "succeed", "succeed-result": "{}"}, OPERATORS),
    (
        "/executions/bulk/",
        {"action": "stop", "scope": "selection", "ids": "{pk}", "reason": "x", "confirmed": "on"},
        OPERATORS,
    ),
    (
        "/functions/new/",
        {
            "name": "x",
            "handler": "examples.booking:handler",
            "durable": "on",
            "execution_timeout": "60",
            "retention_days": "1",
        },
        ADMINS,
    ),
    (
        "/functions/booking/edit/",
        {
            "name": "booking",
            "handler": "examples.booking:handler",
            "durable": "on",
            "execution_timeout": "60",
            "retention_days": "1",
        },
        ADMINS,
    ),
    ("/functions/booking/enable/", {"enabled": "0", "confirmed": "1"}, ADMINS),
    ("/functions/booking/start/", {"input_payload": "{}"}, OPERATORS),
    ("/faults/switch/", {"point": "payment.charge", "faults": "off"}, OPERATORS),
]


def _data(data: dict[str, str], world: World) -> dict[str, str]:
    return {key: value.replace("{pk}", str(world.execution.pk)) for key, value in data.items()}


def _unchanged(world: World) -> None:
    assert not AuditEntry.objects.exists()
    assert Execution.objects.count() == 1
    assert Execution.objects.get().status == "RUNNING"
    assert Function.objects.get(name="booking").enabled
    assert not Function.objects.filter(name="x").exists()


@pytest.mark.parametrize(("path", "data", "allowed"), ACTIONS, ids=[a[0] for a in ACTIONS])
def test_actions_refused_without_permission(
    world: World, path: str, data: dict[str, str], allowed: set[str]
) -> None:
    for role in ALL_ROLES:
        if role in allowed:
            continue
        response = world.cast.client(role).post(url(path, world), _data(data, world))
        assert response.status_code == 403, f"{role} POST {path}: {response.status_code}"
    response = Client().post(url(path, world), _data(data, world))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    _unchanged(world)


@pytest.mark.parametrize(("path", "data", "allowed"), ACTIONS, ids=[a[0] for a in ACTIONS])
def test_actions_refused_without_csrf_token(
    world: World, path: str, data: dict[str, str], allowed: set[str]
) -> None:
    role = "admin" if "admin" in allowed and "operator" not in allowed else "operator"
    response = world.cast.client(role, csrf_checks=True).post(url(path, world), _data(data, world))
    assert response.status_code == 403
    assert b"CSRF" in response.content
    _unchanged(world)


@pytest.mark.parametrize(
    "path",
    [
        "/executions/{pk}/pause/",
        "/executions/{pk}/resume/",
        "/functions/booking/enable/",
        "/faults/switch/",
        "/executions/bulk/",
    ],
)
def test_post_only_actions_refuse_get(world: World, path: str) -> None:
    assert world.cast.client("operator").get(url(path, world)).status_code == 405


def test_viewers_see_no_action_buttons(world: World) -> None:
    detail = world.cast.client("viewer").get(f"/executions/{world.execution.pk}/").content.decode()
    assert 'id="execution-name"' in detail
    for button in ("action-stop", "action-pause", "action-rerun", "complete-callback"):
        assert button not in detail
    listing = world.cast.client("viewer").get("/executions/").content.decode()
    assert 'id="bulk-form"' not in listing and "execution-row-" in listing


def test_operators_see_their_buttons(world: World) -> None:
    detail = world.cast.client("operator").get(f"/executions/{world.execution.pk}/").content.decode()
    for button in ("action-stop", "action-pause", "action-rerun"):
        assert button in detail
    assert 'id="bulk-form"' in world.cast.client("operator").get("/executions/").content.decode()


def test_login_page_and_logout(world: World) -> None:
    world.cast["viewer"].set_password(PASSWORD)
    world.cast["viewer"].save()
    client = Client()
    assert client.get("/accounts/login/").status_code == 200
    response = client.post("/accounts/login/", {"username": "viewer", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_healthz_and_admin_stay(world: World) -> None:
    assert Client().get("/healthz").json() == {"status": "ok"}
    assert Client().get("/admin/").status_code == 302
