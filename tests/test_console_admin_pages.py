"""The console's admin pages (Users, API keys): who may use them, what they change, the lockout rules.

Only the admins group (and superusers) get them; every other group gets 403 and nothing changes;
anonymous users are sent to log in; a POST without a CSRF token is refused. Changes go through
``executions.accounts`` and leave audit entries; a new key's secret appears once, in the
response that made it. The list pages make the same number of queries at any size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import User
from django.test import Client

from executions.api import access_keys
from executions.models import AccessKey, AuditEntry
from tests.console_support import PASSWORD, Cast, make_cast

pytestmark = pytest.mark.django_db

ROLES = ("admin", "operator", "viewer", "approver", "nobody")
AUTH = 4  # session, user, user permissions, group permissions


@dataclass(frozen=True)
class World:
    cast: Cast
    key: AccessKey

    def url(self, template: str) -> str:
        return template.format(user=self.cast["viewer"].pk, key=self.key.pk)


@pytest.fixture
def world() -> World:
    cast = make_cast()
    return World(cast, access_keys.key_create(description="ci", user=cast["operator"]).key)


PAGES = [
    "/users/",
    "/users/new/",
    "/users/{user}/",
    "/api-keys/",
    "/api-keys/new/",
    "/api-keys/{key}/revoke/",
]
ACTIONS = [
    ("/users/new/", {"username": "eve", "password1": PASSWORD, "password2": PASSWORD, "groups": "admins"}),
    ("/users/{user}/groups/", {"groups": "admins"}),
    ("/users/{user}/active/", {"active": "0"}),
    ("/api-keys/new/", {"description": "mine"}),
    ("/api-keys/{key}/revoke/", {}),
]


def unchanged(world: World) -> None:
    assert not AuditEntry.objects.exists()
    assert not User.objects.filter(username="eve").exists()
    viewer = User.objects.get(pk=world.cast["viewer"].pk)
    assert viewer.is_active and [g.name for g in viewer.groups.all()] == ["viewers"]
    assert AccessKey.objects.count() == 1 and AccessKey.objects.get().revoked_at is None


def test_pages_for_admins_only(world: World) -> None:
    for path in PAGES:
        for role in ROLES:
            status = world.cast.client(role).get(world.url(path)).status_code
            assert status == (200 if role == "admin" else 403), f"{role} GET {path}: {status}"
        anonymous = Client().get(world.url(path))
        assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")


def test_the_nav_shows_users_and_api_keys_to_admins_only(world: World) -> None:
    for role in ROLES:
        page = world.cast.client(role).get("/users/").content.decode()  # the 403 page has the nav too
        shown = 'href="/users/"' in page and 'href="/api-keys/"' in page
        assert shown == (role == "admin"), role


def test_actions_refused_to_other_groups_and_without_csrf(world: World) -> None:
    for path, data in ACTIONS:
        for role in ROLES[1:]:
            status = world.cast.client(role).post(world.url(path), data).status_code
            assert status == 403, f"{role} POST {path}: {status}"
        anonymous = Client().post(world.url(path), data)
        assert anonymous["Location"].startswith("/accounts/login/")
        no_token = world.cast.client("admin", csrf_checks=True).post(world.url(path), data)
        assert no_token.status_code == 403 and b"CSRF" in no_token.content, path
    unchanged(world)


def test_create_a_user_with_a_validated_password(world: World) -> None:
    client = world.cast.client("admin")
    for weak, why in (
        ("eve", b"too short"),
        ("12345678901", b"entirely numeric"),
        ("password123", b"too common"),
    ):
        refused = client.post("/users/new/", {"username": "eve", "password1": weak, "password2": weak})
        assert refused.status_code == 400 and why in refused.content, weak
    differ = client.post(
        "/users/new/", {"username": "eve", "password1": PASSWORD, "password2": PASSWORD + "x"}
    )
    assert differ.status_code == 400 and b"The two passwords differ" in differ.content
    taken = client.post("/users/new/", {"username": "Viewer", "password1": PASSWORD, "password2": PASSWORD})
    assert taken.status_code == 400 and b"exists already" in taken.content
    assert not User.objects.filter(username="eve").exists()

    data = {"username": "eve", "email": "eve@example.com", "password1": PASSWORD, "password2": PASSWORD}
    created = client.post("/users/new/", {**data, "groups": ["operators", "approvers"]})
    eve = User.objects.get(username="eve")
    assert created["Location"] == f"/users/{eve.pk}/"
    assert sorted(g.name for g in eve.groups.all()) == ["approvers", "operators"]
    assert eve.is_active and not eve.is_staff and eve.check_password(PASSWORD)
    assert PASSWORD not in eve.password  # hashed
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.target, entry.actor_name, entry.channel) == (
        "user.create",
        "eve",
        "admin",
        "console",
    )
    assert PASSWORD not in str(entry.details)


def test_change_groups_deactivate_and_reactivate_someone_else(world: World) -> None:
    client = world.cast.client("admin")
    viewer, operator = world.cast["viewer"], world.cast["operator"]
    viewer.groups.add(*User.objects.get(pk=world.cast["approver"].pk).groups.all())  # kept: not asked
    assert client.post(f"/users/{viewer.pk}/groups/", {"groups": ["operators"]}).status_code == 302
    assert sorted(g.name for g in viewer.groups.all()) == ["operators"]

    assert client.post(f"/users/{operator.pk}/active/", {"active": "0"}).status_code == 302
    operator.refresh_from_db()
    assert not operator.is_active
    # Their key is shut with them (the key acts with no permissions at all).
    assert access_keys.key_missing_permissions(world.key, "ListFunctions") == ("executions.view_function",)
    assert world.cast.client("operator").get("/executions/").status_code != 200
    assert client.post(f"/users/{operator.pk}/active/", {"active": "1"}).status_code == 302
    operator.refresh_from_db()
    assert operator.is_active
    actions = list(AuditEntry.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["user.groups", "user.deactivate", "user.reactivate"]


def test_an_admin_cannot_lock_themselves_out(world: World) -> None:
    admin = world.cast["admin"]
    client = world.cast.client("admin")
    page = client.get(f"/users/{admin.pk}/").content.decode()
    assert 'id="user-deactivate"' not in page  # not offered
    refused = client.post(f"/users/{admin.pk}/active/", {"active": "0"}, follow=True)
    assert b"You cannot deactivate yourself" in refused.content
    left = client.post(f"/users/{admin.pk}/groups/", {"groups": ["operators"]})
    assert left.status_code == 400 and b"You cannot leave the admins group yourself" in left.content
    admin.refresh_from_db()
    assert admin.is_active and [g.name for g in admin.groups.all()] == ["admins"]
    # Adding groups to oneself while staying an admin is fine.
    assert client.post(f"/users/{admin.pk}/groups/", {"groups": ["admins", "approvers"]}).status_code == 302
    assert not AuditEntry.objects.exclude(action="user.groups").exists()


def test_only_a_superuser_changes_a_superuser_or_makes_ownerless_keys(world: World) -> None:
    root = User.objects.create_superuser("root", "root@example.com", None)
    client = world.cast.client("admin")
    refused = client.post(f"/users/{root.pk}/active/", {"active": "0"}, follow=True)
    assert b"only a superuser may change them" in refused.content
    root.refresh_from_db()
    assert root.is_active

    ownerless = client.post("/api-keys/new/", {"description": "ci", "owner": ""})
    assert ownerless.status_code == 400 and AccessKey.objects.count() == 1
    superuser = Client()
    superuser.force_login(root)
    made = superuser.post("/api-keys/new/", {"description": "deploy", "owner": ""})
    assert made.status_code == 200 and AccessKey.objects.get(description="deploy").user is None


def test_create_a_key_reveals_the_secret_once_then_revoke(world: World) -> None:
    client = world.cast.client("admin")
    form = client.get("/api-keys/new/").content.decode()
    assert "deployment's admin key" not in form  # not offered to a non-superuser
    made = client.post("/api-keys/new/", {"description": "CI deploys", "owner": world.cast["admin"].pk})
    key = AccessKey.objects.get(description="CI deploys")
    secret = access_keys.decrypt_secret(key.secret_encrypted)
    assert secret and secret in made.content.decode() and key.user == world.cast["admin"]
    assert "no-store" in made["Cache-Control"]
    assert secret not in key.secret_encrypted
    listing = client.get("/api-keys/").content.decode()
    assert key.access_key_id in listing and secret not in listing and "never" in listing
    assert secret not in client.get(f"/users/{world.cast['admin'].pk}/").content.decode()

    confirm = client.get(f"/api-keys/{key.pk}/revoke/").content.decode()
    assert 'id="confirm-revoke"' in confirm
    assert client.post(f"/api-keys/{key.pk}/revoke/")["Location"] == "/api-keys/"
    key.refresh_from_db()
    assert key.revoked_at is not None
    client.post(f"/api-keys/{key.pk}/revoke/")  # again: the first time is kept, no second entry
    entries = list(AuditEntry.objects.order_by("id").values_list("action", "target", "details"))
    assert entries == [
        ("key.create", key.access_key_id, {"acts_as": "admin", "description": "CI deploys"}),
        ("key.revoke", key.access_key_id, {"acts_as": "admin"}),
    ]
    assert secret not in str(entries)


@pytest.mark.parametrize("rows", [3, 20])
def test_list_query_counts(world: World, rows: int, django_assert_num_queries: Callable[..., object]) -> None:
    for n in range(rows):
        person = User.objects.create_user(f"person-{n}")
        person.groups.add(*world.cast["operator"].groups.all())
        access_keys.key_create(description=f"key {n}", user=person)
    client = world.cast.client("admin")
    with django_assert_num_queries(AUTH + 2):  # users with their active key counts, their groups
        assert client.get("/users/").status_code == 200
    with django_assert_num_queries(AUTH + 1):  # keys with their owners
        assert client.get("/api-keys/").status_code == 200
