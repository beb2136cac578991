"""One way to show time on the admin pages and in the audit log (issue 12 review, 9): last login,
last use, created and revoked as the console's one time tag (UTC written, the browser's zone shown)
or its "13 min ago" countdown, never Django's "13 minutes ago" or an unlabelled UTC time; moments
in audit details (ISO text, epoch numbers) as time tags too. Rendered pages, no browser."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from executions.api import access_keys
from executions.audit import Actor, record
from executions.console import formatting
from executions.console.views.audit import detail_items
from executions.models import AccessKey
from tests.console_support import Cast, make_cast

pytestmark = pytest.mark.django_db

AUTH = 4  # session, user, user permissions, group permissions
MOMENT = datetime.datetime(2026, 11, 30, 12, 59, 6, 220589, tzinfo=datetime.UTC)
TIME_TAG = re.compile(r'<time datetime="[^"]+" data-local="datetime" title="[^"]+ UTC">[^<]+ UTC</time>')
AGO = re.compile(r'<time data-countdown datetime="[^"]+" title="[^"]+ UTC">13 min( \d+ s)? ago</time>')
BARE_TIME = re.compile(r">\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)?<")


@pytest.fixture
def cast() -> Cast:
    return make_cast()


@pytest.mark.parametrize("rows", [2, 12])
def test_admin_pages_show_times_the_console_way(
    cast: Cast, rows: int, django_assert_num_queries: Callable[..., object]
) -> None:
    earlier = timezone.now() - datetime.timedelta(minutes=13)
    User.objects.filter(pk=cast["viewer"].pk).update(last_login=earlier)
    for n in range(rows):
        access_keys.key_create(description=f"key {n}", user=cast["operator"])
    key = access_keys.key_create(description="used", user=cast["operator"]).key
    revoked = access_keys.key_create(description="old", user=cast["operator"]).key
    AccessKey.objects.filter(pk=key.pk).update(last_used_at=earlier)
    AccessKey.objects.filter(pk=revoked.pk).update(revoked_at=earlier)
    client = cast.client("admin")

    with django_assert_num_queries(AUTH + 2):  # users with their active key counts, their groups
        users = client.get("/users/").content.decode()
    with django_assert_num_queries(AUTH + 1):  # keys with their owners
        keys = client.get("/api-keys/").content.decode()
    viewer = client.get(f"/users/{cast['viewer'].pk}/").content.decode()
    owner = client.get(f"/users/{cast['operator'].pk}/").content.decode()  # their keys' table
    revoke = client.get(f"/api-keys/{key.pk}/revoke/").content.decode()
    already = client.get(f"/api-keys/{revoked.pk}/revoke/").content.decode()

    for page in (users, viewer, keys, revoke):
        assert AGO.search(page), "last login / last use as the console's countdown"
    assert len(TIME_TAG.findall(keys)) == rows + 2 + 1  # every key's creation, and the revocation
    assert f"revoked {formatting.time_tag(earlier)}</span>" in keys
    assert len(TIME_TAG.findall(owner)) == rows + 2 + 1
    assert f"Revoked already, at {formatting.time_tag(earlier)}." in already
    for page in (users, viewer, owner, keys, revoke, already):
        assert "minutes ago" not in page and "in the last minute" not in page
        assert not BARE_TIME.search(page)


def test_audit_details_show_moments_as_time_tags(
    cast: Cast, django_assert_num_queries: Callable[..., object]
) -> None:
    assert detail_items(
        {
            "decided_at": MOMENT.isoformat(),
            "StartTimestamp": MOMENT.timestamp(),
            "ended_at": int(MOMENT.timestamp() * 1000),  # milliseconds
            "count": 2,
            "title": "Publish: 2026-11-30 release",  # text with a date in it stays text
            "reviewers": ["alice", "legal"],
            "error": {"ErrorMessage": "declined"},
            "reason": "",
            "comment": "x" * 200,
        }
    ) == [
        ("decided_at", formatting.time_tag(MOMENT)),
        ("StartTimestamp", formatting.time_tag(MOMENT)),
        ("ended_at", formatting.time_tag(MOMENT.replace(microsecond=220000))),
        ("count", "2"),
        ("title", "Publish: 2026-11-30 release"),
        ("reviewers", '["alice", "legal"]'),
        ("error", '{"ErrorMessage": "declined"}'),
        ("comment", "x" * 159 + "…"),
    ]
    for n in range(3):
        record(Actor.console(cast["approver"]), "approval.approve", f"arn-{n}", decided_at=MOMENT.isoformat())
    client = cast.client("admin")
    with django_assert_num_queries(AUTH + 1):
        page = client.get("/audit/").content.decode()
    assert page.count(f'<span class="muted">decided_at:</span> {formatting.time_tag(MOMENT)}</div>') == 3
    assert MOMENT.isoformat() not in page.replace(f'datetime="{MOMENT.isoformat()}"', "")
