"""The execution page's invocations: every outcome (timed out, crashed, out of memory, worker
lost, raised, ...) distinct in words, glyph and colour, in the invocations table and on the
timeline's invocations lane, at no extra query.

Fixtures are plain ORM rows (no engine): an execution and one invocation per outcome.
"""

from __future__ import annotations

import datetime
import html
import re
from collections.abc import Callable
from typing import Any

import pytest

from executions.console import timeline
from executions.models import Execution, Function, Invocation, InvocationOutcome, Operation
from tests.console_support import Cast, make_cast

pytestmark = pytest.mark.django_db

UTC = datetime.UTC
START = datetime.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
AUTH = 4  # session, user, user permissions, group permissions (as in test_console_query_counts)


@pytest.fixture
def cast() -> Cast:
    return make_cast()


def seconds(n: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=n)


def make_execution(
    name: str = "orders-1", *, status: str = "FAILED", ended_at: datetime.datetime | None = None
) -> Execution:
    function, _ = Function.objects.get_or_create(
        name="orders", defaults={"handler": "tests.handlers:handler"}
    )
    execution = Execution.objects.create(
        function=function,
        function_version=1,
        handler="tests.handlers:handler",
        name=name,
        invocation_id=f"inv-{name}",
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:orders:$LATEST/durable-execution/{name}/inv-{name}",
        status=status,
        started_at=START,
        ended_at=ended_at,
        execution_timeout=3600,
    )
    Operation.objects.create(
        execution=execution, operation_id=execution.invocation_id, position=1, type="EXECUTION",
        status="STARTED", started_at=START,
    )  # fmt: skip
    Operation.objects.create(
        execution=execution, operation_id="s1", position=2, type="STEP", sub_type="Step",
        name="charge card", status="SUCCEEDED", started_at=START, ended_at=START + seconds(1),
    )  # fmt: skip
    return execution


def invoke(
    execution: Execution,
    number: int,
    outcome: str,
    *,
    at: float,
    took: float | None,
    worker: str = "worker-a",
    error: dict[str, str] | None = None,
    pid: int | None = None,
    memory: int | None = None,
) -> Invocation:
    """Invocation ``number``, started ``at`` seconds into the execution, lasting ``took`` (None: running)."""
    started = START + seconds(at)
    invocation = Invocation.objects.create(
        execution=execution,
        number=number,
        request_id=f"req-{number}",
        worker=worker,
        started_at=started,
        ended_at=None if took is None else started + seconds(took),
        outcome=outcome,
        error=error,
        sandbox_pid=pid,
        memory_used_mb=memory,
    )
    Execution.objects.filter(pk=execution.pk).update(invocation_count=number)
    return invocation


TIMED_OUT = {
    "ErrorType": "Sandbox.Timedout",
    "ErrorMessage": "RequestId: req-2 Error: Task timed out after 2.00 seconds",
}
CRASHED = {
    "ErrorType": "Runtime.ExitError",
    "ErrorMessage": "RequestId: req-3 Error: Runtime exited with error: signal: segmentation fault",
}
OUT_OF_MEMORY = {
    "ErrorType": "Runtime.OutOfMemory",
    "ErrorMessage": "RequestId: req-4 Error: Runtime exited with error: out of memory (128 MB)",
}
LOST = {
    "ErrorType": "Runtime.ExitError",
    "ErrorMessage": "Worker worker-b stopped responding; its lease expired",
}
RAISED = {"ErrorType": "ValueError", "ErrorMessage": "card declined"}


def one_of_each() -> Execution:
    """Nine invocations over 100 s, each ending differently."""
    execution = make_execution(ended_at=START + seconds(100))
    invoke(execution, 1, InvocationOutcome.PENDING, at=0, took=0.35, pid=101, memory=40)
    invoke(execution, 2, InvocationOutcome.TIMEOUT, at=10, took=2.0, error=TIMED_OUT, pid=4242, memory=55)
    invoke(execution, 3, InvocationOutcome.CRASH, at=20, took=0.8, error=CRASHED, pid=4243)
    invoke(execution, 4, InvocationOutcome.OOM, at=30, took=1.5, error=OUT_OF_MEMORY, pid=4244, memory=131)
    invoke(execution, 5, InvocationOutcome.LOST, at=40, took=45, worker="worker-b", error=LOST)
    invoke(execution, 6, InvocationOutcome.ERROR, at=86, took=0.2, error=RAISED, pid=4246)
    invoke(execution, 7, InvocationOutcome.INVALID, at=88, took=0.1)
    invoke(execution, 8, InvocationOutcome.FAILED, at=90, took=0.3)
    invoke(execution, 9, InvocationOutcome.SUCCEEDED, at=95, took=5.0, worker="worker-c")
    return execution


def page(cast: Cast, execution: Execution) -> str:
    response = cast.client("viewer").get(f"/executions/{execution.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def row_html(content: str, number: int) -> str:
    match = re.search(rf'<tr id="invocation-{number}".*?</tr>', content, re.S)
    assert match, f"no row for invocation {number}"
    return match.group(0)


def text(fragment: str) -> str:
    """The visible text of an HTML fragment, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def lane_marks(content: str) -> dict[int, dict[str, str]]:
    """Each lane mark's attributes (and its inner HTML as ``inner``), by invocation number."""
    marks = {}
    for attrs, inner in re.findall(r'<a (class="inv-mark[^>]*)>(.*?)</a>', content, re.S):
        found = dict(re.findall(r'([\w-]+)="([^"]*)"', attrs))
        found = {key: html.unescape(value) for key, value in found.items()}
        marks[int(found["href"].removeprefix("#invocation-"))] = {**found, "inner": inner}
    return marks


# --- the invocations table --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "css", "label", "cells"),
    [
        (1, "inv-pending", "pending", ["350 ms", "worker-a", "pid 101", "40 MB used"]),
        (2, "inv-timeout", "timed out", ["Sandbox.Timedout", "Task timed out after 2.00 seconds", "2.0 s",
                                         "worker-a", "pid 4242", "55 MB used"]),
        (3, "inv-crash", "crashed", ["Runtime.ExitError", "signal: segmentation fault", "800 ms",
                                     "pid 4243"]),
        (4, "inv-oom", "out of memory", ["Runtime.OutOfMemory", "out of memory (128 MB)", "1.5 s",
                                         "pid 4244", "131 MB used"]),
        (5, "inv-lost", "worker lost", ["Runtime.ExitError", "Worker worker-b stopped responding", "45.0 s",
                                        "worker-b"]),
        (6, "inv-error", "raised", ["ValueError", "card declined", "200 ms", "pid 4246"]),
        (7, "inv-invalid", "invalid output", ["100 ms"]),
        (8, "inv-failed", "failed", ["300 ms"]),
        (9, "inv-succeeded", "succeeded", ["5.0 s", "worker-c"]),
    ],
)  # fmt: skip
def test_table_shows_each_outcome_with_its_error_duration_worker_and_sandbox(
    cast: Cast, number: int, css: str, label: str, cells: list[str]
) -> None:
    content = page(cast, one_of_each())
    row = row_html(content, number)
    badge = re.search(
        r'<span class="badge inv ([\w-]+)"[^>]*data-testid="invocation-outcome">(.*?</span>[^<]*)', row
    )
    assert badge, row
    assert badge.group(1) == css
    # The label is text, not colour alone; the glyph beside it is hidden from screen readers.
    assert text(badge.group(2)).endswith(label) and 'aria-hidden="true"' in badge.group(2)
    visible = text(row)
    assert visible.startswith(f"{number} ")
    for cell in cells:
        assert cell in visible, (cell, visible)


def test_each_outcome_has_its_own_label_and_class() -> None:
    styles = [timeline.OUTCOME_STYLES[outcome] for outcome in InvocationOutcome]
    assert len({style.label for style in styles}) == len(styles)
    assert len({style.css for style in styles}) == len(styles)
    assert all(style.glyph and style.meaning for style in styles)
    assert all(timeline.OUTCOME_STYLES[outcome].abnormal for outcome in ("TIMEOUT", "CRASH", "OOM", "LOST"))


def test_unknown_sandbox_details_show_a_dash_and_an_unknown_outcome_its_name(cast: Cast) -> None:
    execution = make_execution(ended_at=START + seconds(10))
    invoke(execution, 1, "THROTTLED", at=0, took=1, worker="")
    row = row_html(page(cast, execution), 1)
    assert 'class="badge inv inv-unknown"' in row and "throttled" in text(row)
    assert text(row).count("—") == 2  # no worker, no pid or memory


# --- a running invocation ---------------------------------------------------------------------


def test_a_running_invocation_says_running_and_runs_to_now_on_the_lane(cast: Cast) -> None:
    execution = make_execution(status="RUNNING")
    invoke(execution, 1, InvocationOutcome.PENDING, at=0, took=0.5)
    invoke(execution, 2, "", at=30, took=None, worker="worker-z", pid=777)
    content = page(cast, execution)
    row = row_html(content, 2)
    assert 'data-outcome="RUNNING"' in row and 'class="badge inv inv-running"' in row
    assert text(row).startswith("2 ") and " running " in f" {text(row)} " and "pid 777" in text(row)
    mark = lane_marks(content)[2]
    assert "open-ended" in mark["class"] and "running" in mark["title"] and "worker worker-z" in mark["title"]


# --- the timeline's invocations lane ----------------------------------------------------------


def test_lane_marks_every_invocation_on_the_time_axis_with_a_tooltip(cast: Cast) -> None:
    content = page(cast, one_of_each())
    assert 'data-testid="invocation-lane"' in content
    marks = lane_marks(content)
    assert sorted(marks) == list(range(1, 10))

    timed_out = marks[2]
    assert timed_out["data-outcome"] == "TIMEOUT" and "inv-timeout" in timed_out["class"]
    # 10 s into a 100 s execution, 2 s long
    assert timed_out["style"] == "--l:10.000%;--w:2.000%"
    assert (
        timed_out["title"]
        == "Invocation 2: timed out · Sandbox.Timedout · 2.0 s · worker worker-a · 55 MB used"
    )
    assert timed_out["aria-label"] == timed_out["title"]

    assert marks[3]["title"] == "Invocation 3: crashed · Runtime.ExitError · 800 ms · worker worker-a"
    assert marks[4]["title"].startswith("Invocation 4: out of memory · Runtime.OutOfMemory · 1.5 s")
    assert marks[5]["title"] == "Invocation 5: worker lost · Runtime.ExitError · 45.0 s · worker worker-b"

    # The sandbox deaths (and a raise) carry their glyph on the lane; the ordinary endings do not.
    glyphs = {number: text(mark["inner"]) for number, mark in marks.items()}
    assert {n for n, glyph in glyphs.items() if glyph} == {2, 3, 4, 5, 6, 7}
    assert len({glyphs[n] for n in (2, 3, 4, 5)}) == 4
    assert all('aria-hidden="true"' in marks[n]["inner"] for n in (2, 3, 4, 5))

    lane = re.search(r'<tr data-testid="invocation-lane">.*?</tr>', content, re.S)
    assert lane
    assert "9 invocations" in text(lane.group(0))
    # The deaths first: the details cell is cut short on a narrow screen.
    summary = "1 timed out · 1 crashed · 1 out of memory · 1 worker lost · 1 raised · 1 invalid output"
    assert summary + " · 1 failed · 1 pending · 1 succeeded" in text(lane.group(0))


def test_lane_shows_even_before_the_first_checkpoint(cast: Cast) -> None:
    """A handler that crashes before it checkpoints anything leaves no operation rows."""
    execution = make_execution(ended_at=START + seconds(5))
    Operation.objects.filter(execution=execution).exclude(type="EXECUTION").delete()
    invoke(execution, 1, InvocationOutcome.OOM, at=0, took=1, error=OUT_OF_MEMORY, memory=300)
    content = page(cast, execution)
    assert "No operations yet" in content
    assert lane_marks(content)[1]["data-outcome"] == "OOM"


def test_worker_names_and_messages_are_escaped(cast: Cast) -> None:
    execution = make_execution(ended_at=START + seconds(5))
    invoke(execution, 1, InvocationOutcome.CRASH, at=0, took=1, worker='<b>"w"</b>',
           error={"ErrorType": "<i>T</i>", "ErrorMessage": "<script>x</script>"})  # fmt: skip
    content = page(cast, execution)
    assert "<script>x</script>" not in content and "<b>" not in content and "<i>T</i>" not in content
    assert "&lt;script&gt;x&lt;/script&gt;" in content


def test_only_the_newest_invocations_are_listed_but_all_are_counted(
    cast: Cast, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(timeline, "INVOCATIONS_SHOWN", 3)
    execution = make_execution(ended_at=START + seconds(100))
    for number in range(1, 6):
        outcome = InvocationOutcome.TIMEOUT if number == 1 else InvocationOutcome.PENDING
        invoke(execution, number, outcome, at=number * 10, took=1, error=TIMED_OUT if number == 1 else None)
    content = page(cast, execution)
    assert "the latest 3 shown" in content
    assert sorted(lane_marks(content)) == [3, 4, 5]
    assert content.count('data-testid="invocation-row"') == 3
    assert "1 timed out · 4 pending" in content


# --- queries ------------------------------------------------------------------------------------


def test_invocation_details_cost_no_extra_query(
    cast: Cast, django_assert_num_queries: Callable[..., Any]
) -> None:
    """The same count as tests/test_console_query_counts.py: the execution, then operations,
    invocations (with outcome, pid and memory), child executions, and the history's event
    types and first page."""
    execution = one_of_each()
    client = cast.client("operator")
    for path in (f"/executions/{execution.pk}/", f"/executions/{execution.pk}/live/"):
        with django_assert_num_queries(AUTH + 6):
            assert client.get(path).status_code == 200
