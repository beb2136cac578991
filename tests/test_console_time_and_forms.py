"""One way to show time (a <time> in UTC that the browser shows in its zone) and one rule for
reasons (stop and redrive say why, on one execution or in bulk): rendered pages, no browser."""

from __future__ import annotations

import datetime
import re

import pytest

from executions.console import formatting
from executions.console.forms import BulkForm, ReasonForm, RedriveForm
from executions.models import AuditEntry, Execution
from tests.console_support import Cast, make_cast, register_demos
from tests.engine_driver import refreshed, start

pytestmark = pytest.mark.django_db

MOMENT = datetime.datetime(2026, 11, 30, 12, 0, 5, 250_000, tzinfo=datetime.UTC)
TIME_TAG = re.compile(r'<time datetime="([^"]+)" data-local="(\w+)" title="([^"]+ UTC)">([^<]+ UTC)</time>')


@pytest.fixture
def cast() -> Cast:
    register_demos()
    return make_cast()


def running_execution() -> Execution:
    return refreshed(start("document-approval", {"document_id": "time-1"}))


# --- time ----------------------------------------------------------------------------------


def test_the_time_tag_is_utc_with_a_label_and_the_iso_moment_for_the_browser() -> None:
    assert formatting.time_tag(MOMENT) == (
        '<time datetime="2026-11-30T12:00:05.250000+00:00" data-local="datetime" '
        'title="2026-11-30 12:00:05 UTC">2026-11-30 12:00:05 UTC</time>'
    )
    berlin = MOMENT.astimezone(datetime.timezone(datetime.timedelta(hours=1)))
    assert formatting.time_tag(berlin) == formatting.time_tag(MOMENT)  # always written in UTC
    assert formatting.utc_text(MOMENT, "time") == "12:00:05 UTC"
    assert formatting.utc_text(MOMENT, "precise") == "12:00:05.250 UTC"
    assert formatting.time_tag(None) == ""


def test_countdowns_use_the_duration_format_at_whole_seconds() -> None:
    assert [formatting.countdown_text(s) for s in (42.4, 185, 7800, -3 * 86400 - 4 * 3600, 0)] == [
        "in 42 s",
        "in 3 min 5 s",
        "in 2 h 10 min",
        "3 d 4 h ago",
        "in 0 s",
    ]
    tag = formatting.countdown_tag(MOMENT + datetime.timedelta(seconds=65), MOMENT)
    assert tag == (
        '<time data-countdown datetime="2026-11-30T12:01:10.250000+00:00" '
        'title="2026-11-30 12:01:10 UTC">in 1 min 5 s</time>'
    )
    assert str(formatting.ago(MOMENT, MOMENT + datetime.timedelta(hours=3))).endswith(">3 h ago</time>")


def test_list_detail_and_audit_pages_show_moments_as_time_tags(cast: Cast) -> None:
    execution = running_execution()
    client = cast.client("admin")
    started = formatting.time_tag(execution.started_at)
    for url in ("/executions/", f"/executions/{execution.pk}/"):
        page = client.get(url).content.decode()
        assert str(started) in page, url
    # The detail page's execution timeout is a countdown with its UTC time on hover.
    detail = client.get(f"/executions/{execution.pk}/").content.decode()
    assert re.search(r'<time data-countdown datetime="[^"]+" title="[^"]+ UTC">in \d', detail)
    client.post(f"/executions/{execution.pk}/pause/", {"reason": ""})
    audit = client.get("/audit/").content.decode()
    assert TIME_TAG.search(audit)
    # No moment on these pages is left as bare text without a zone.
    for page in (detail, audit):
        assert not re.search(r">\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)?<", page)


# --- reasons -------------------------------------------------------------------------------


def test_one_rule_for_reasons_single_and_bulk() -> None:
    fields = [form.base_fields["reason"] for form in (ReasonForm, RedriveForm, BulkForm)]
    assert all(field.required for field in fields)
    assert {field.error_messages["required"] for field in fields} == {
        "Say why: the reason is kept in the audit log."
    }


def test_the_stop_page_marks_the_reason_required(cast: Cast) -> None:
    execution = running_execution()
    page = cast.client("operator").get(f"/executions/{execution.pk}/stop/").content.decode()
    assert 'data-testid="required-reason">(required)</span>' in page
    assert re.search(r"<textarea[^>]*name=\"reason\"[^>]*required", page)
    assert "(optional)" not in page


def test_bulk_confirmation_marks_the_reason_required_and_refuses_it_empty(cast: Cast) -> None:
    execution = running_execution()
    client = cast.client("operator")
    form = {"action": "stop", "scope": "selection", "ids": [str(execution.pk)]}

    confirm = client.post("/executions/bulk/", form)  # from the list: no reason asked yet
    page = confirm.content.decode()
    assert confirm.status_code == 200 and 'data-testid="required-reason">(required)</span>' in page
    assert re.search(r"<textarea[^>]*name=\"reason\"[^>]*required", page) and "(optional)" not in page
    assert "Say why" not in page

    refused = client.post("/executions/bulk/", {**form, "confirmed": "on", "reason": "  "})
    page = refused.content.decode()
    assert refused.status_code == 400 and "Say why: the reason is kept in the audit log." in page
    assert 'id="bulk-submit"' in page  # the same confirmation, with its targets, to try again
    assert refreshed(execution).status == "RUNNING" and not AuditEntry.objects.exists()
