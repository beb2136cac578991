"""What a bulk action applies to (issue 12 review, 11): the confirmation page counts the selected
executions the action applies to and names the statuses it skips; with none, nothing can be
submitted; the job page says "2 selected executions" for a hand-picked selection. View tests on
seeded rows (no engine), with query counts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from executions import bulk_jobs
from executions.audit import Actor
from executions.models import BulkJob, Execution, Function
from tests.console_support import Cast, execution_row, make_cast

pytestmark = pytest.mark.django_db

AUTH = 4  # session, user, user permissions, group permissions


@pytest.fixture
def cast() -> Cast:
    return make_cast()


def seeded(*statuses: str) -> list[Execution]:
    function, _ = Function.objects.get_or_create(
        name="orders", defaults={"handler": "examples.booking:handler"}
    )
    return [execution_row(function, status) for status in statuses]


def post(cast: Cast, action: str, executions: list[Execution], **extra: str) -> Any:
    form = {"action": action, "scope": "selection", "ids": [str(e.pk) for e in executions], **extra}
    return cast.client("operator").post("/executions/bulk/", form)


def test_a_selection_nothing_applies_to_says_so_and_cannot_be_submitted(cast: Cast) -> None:
    [failed] = seeded("FAILED")
    confirm = post(cast, "stop", [failed])
    page = confirm.content.decode()
    assert confirm.status_code == 200 and "<h1>Nothing to stop</h1>" in page
    assert "<strong>0 of 1 selected can be stopped</strong>: 1 FAILED." in page
    assert "Only RUNNING or PAUSED executions can be stopped." in page
    assert 'id="bulk-submit"' not in page and 'name="reason"' not in page
    # Posted anyway (a stale page, a script): refused, no job.
    refused = post(cast, "stop", [failed], confirmed="on", reason="clean up")
    assert refused.status_code == 400 and "0 of 1 selected can be stopped" in refused.content.decode()
    assert not BulkJob.objects.exists()
    # The same for a redrive of what cannot be redriven, ids that are gone included.
    running, done = seeded("RUNNING", "SUCCEEDED")
    gone = Execution(pk=done.pk + 1000)
    page = post(cast, "redrive", [running, done, gone]).content.decode()
    assert "<strong>0 of 3 selected can be redriven</strong>: 1 RUNNING, 1 SUCCEEDED, 1 not found." in page


@pytest.mark.parametrize("size", [2, 12])
def test_a_mixed_selection_counts_what_applies_in_a_fixed_number_of_queries(
    cast: Cast, size: int, django_assert_num_queries: Callable[..., Any]
) -> None:
    executions = seeded(*(["FAILED"] * (size - 1)), "RUNNING")
    client = cast.client("operator")
    form = {"action": "redrive", "scope": "selection", "ids": [str(e.pk) for e in executions]}
    # auth, the statuses of the selection, the interrupted operations (redrive), the sample
    with django_assert_num_queries(AUTH + 3):
        page = client.post("/executions/bulk/", form).content.decode()
    assert f"<h1>Redrive {size - 1} of {size} selected executions?</h1>" in page
    assert (
        f"<strong>{size - 1} of {size} selected can be redriven</strong>; the job skips the rest: 1 RUNNING."
        in page
    )
    assert f'id="bulk-submit">Redrive {size - 1}</button>' in page
    assert page.count('name="ids"') == size  # the job skips (and reports) the rest itself


def test_the_job_page_names_a_selection_by_its_size_and_a_filter_by_its_query(cast: Cast) -> None:
    picked = seeded("FAILED", "FAILED")
    actor = Actor.console(cast["operator"])
    by_hand = bulk_jobs.bulk_job_create(
        actor, action="redrive", scope="selection", target_ids=[e.pk for e in picked], query="status=FAILED"
    )
    by_filter = bulk_jobs.bulk_job_create(
        actor, action="redrive", scope="filter", target_ids=[picked[0].pk], query="status=FAILED"
    )
    client = cast.client("operator")
    page = client.get(f"/executions/bulk/{by_hand.pk}/").content.decode()
    assert 'data-testid="bulk-scope">2 selected executions</span>' in page and "<code>" not in page
    page = client.get(f"/executions/bulk/{by_filter.pk}/").content.decode()
    assert (
        'data-testid="bulk-scope">1 execution the filter matched (<code>status=FAILED</code>)</span>' in page
    )
