"""Executions people recognise (issue 12, item 7): labels, the "Current step" column, parent links.

- A function's registration may name an input field (``label_field``); an execution's label is
  read from its input once, at start, or is the title of the first approval it asks for.
- The list's "Current step" column says what each execution waits on, or where it ended, in
  one query per page whatever its size.
"""

from __future__ import annotations

import datetime
import html
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from approvals.models import ApprovalRequest
from executions import services
from executions.engine.functions import InvalidFunctionConfig, function_register
from executions.engine.starts import label_from_input
from executions.live import fragments
from executions.models import Execution, Function, Operation
from tests.approvals_support import APPROVAL_FUNCTION, approval_handler, running_driver, start_flow
from tests.console_support import Cast, execution_row, make_cast, register_demos
from tests.engine_driver import EngineDriver, handler_path

AUTH = 4  # session, user, user permissions, group permissions


@pytest.fixture
def cast() -> Cast:
    return make_cast()  # the tests using it are marked django_db


# --- labels from the input -----------------------------------------------------------------------


def test_label_from_input_reads_a_field_or_a_dotted_path() -> None:
    assert label_from_input("order_id", '{"order_id": "A-17", "x": 1}') == "A-17"
    assert label_from_input("customer.id", '{"customer": {"id": 4711}}') == "4711"
    assert label_from_input("order_id", '{"order_id": "  two\\nlines  "}') == "two lines"
    assert label_from_input("order_id", '{"order_id": "' + "x" * 300 + '"}') == "x" * 199 + "…"
    for payload in ('{"order_id": true}', '{"order_id": {"a": 1}}', '{"other": 1}', "[1]", '"text"'):
        assert label_from_input("order_id", payload) == ""
    assert label_from_input("", '{"order_id": "A-17"}') == ""


@pytest.mark.django_db
def test_registration_names_the_field_and_starts_store_the_label() -> None:
    handler = "examples.booking:handler"
    function = function_register(name="labelled", handler=handler, label_field="booking.ref")
    assert function.label_field == "booking.ref"
    # Left out (None), the field is kept; "" clears it.
    assert function_register(name="labelled", handler=handler).label_field == "booking.ref"
    started = services.execution_start(function="labelled", input_payload='{"booking": {"ref": "BK-9"}}')
    assert Execution.objects.get(pk=started.execution.pk).label == "BK-9"
    for bad in ("a b", "a..b", ".a", "x" * 129, 5):
        with pytest.raises(InvalidFunctionConfig) as refused:
            function_register(name="labelled", handler=handler, label_field=bad)  # type: ignore[arg-type]
        assert refused.value.field == "label_field"
    call_command("durable", "functions", "register", "labelled", handler, "--label-field", "guest")
    assert Function.objects.get(name="labelled").label_field == "guest"
    call_command("durable", "functions", "register", "labelled", handler, "--label-field", "")
    assert Function.objects.get(name="labelled").label_field == ""


@pytest.mark.django_db
def test_the_registry_form_sets_the_label_field(cast: Cast) -> None:
    register_demos()  # the demos name theirs: order-processing labels by order_id
    assert Function.objects.get(name="order-processing").label_field == "order_id"
    client = cast.client("admin")
    form = client.get("/functions/booking/edit/").content.decode()
    assert 'name="label_field"' in form and 'value="booking_id"' in form
    fields = {
        "handler": "examples.booking:handler",
        "durable": "on",
        "execution_timeout": "900",
        "retention_days": "14",
        "label_field": "guest",
    }
    assert client.post("/functions/booking/edit/", fields).status_code == 302
    assert Function.objects.get(name="booking").label_field == "guest"
    refused = client.post("/functions/booking/edit/", {**fields, "label_field": "not a key"})
    assert refused.status_code == 400 and b"Label field must be an input key" in refused.content
    detail = client.get("/functions/booking/").content.decode()
    assert '<dd id="function-label-field"><code>guest</code>' in detail


# --- the "Current step" column -------------------------------------------------------------------


def make_op(execution: Execution, operation_id: str, type_: str, status: str, **fields: Any) -> Operation:
    return Operation.objects.create(
        execution=execution,
        operation_id=operation_id,
        position=Operation.objects.filter(execution=execution).count() + 1,
        type=type_,
        status=status,
        started_at=timezone.now(),
        **fields,
    )


def seed_every_state(function: Function) -> dict[str, Execution]:
    """One execution per thing the column says."""
    later = timezone.now() + datetime.timedelta(minutes=5)
    seeded = {key: execution_row(function, "RUNNING") for key in ("step", "retry", "wait", "invoke", "map")}
    make_op(seeded["step"], "s1", "STEP", "SUCCEEDED", name="validate")
    make_op(seeded["step"], "s2", "STEP", "STARTED", name="charge", attempt=1)
    make_op(seeded["retry"], "r1", "STEP", "PENDING", name="reserve", attempt=1, next_attempt_at=later)
    make_op(seeded["wait"], "w1", "WAIT", "STARTED", name="cool-off", scheduled_end_at=later)
    make_op(
        seeded["invoke"], "i1", "CHAINED_INVOKE", "STARTED", name="pay", invoke_function_name="chain-payment"
    )
    make_op(seeded["map"], "m", "CONTEXT", "STARTED", sub_type="Map", name="batches")
    for item in range(3):
        make_op(seeded["map"], f"m{item}", "STEP", "STARTED", parent_id="m", name=f"batch-{item}")
    for key, title in (("approval", "Publish: Q3 report"), ("callback", "")):
        seeded[key] = execution = execution_row(function, "PAUSED", label=title)
        make_op(execution, "g", "CONTEXT", "STARTED", sub_type="WaitForCallback", name="review")
        callback = make_op(
            execution, "cb", "CALLBACK", "STARTED", parent_id="g", name="review create callback id"
        )
        if title:  # the approvals app's row for this callback, as request_approval leaves it
            ApprovalRequest.objects.create(
                callback_id_hash=f"hash-{execution.pk}",
                execution=execution,
                operation=callback,
                title=title,
                created_at=timezone.now(),
                expires_at=later,
            )
    seeded["failed"] = execution_row(function, "FAILED", label="ORD-7")
    make_op(seeded["failed"], "f1", "STEP", "SUCCEEDED", name="a")
    make_op(seeded["failed"], "f2", "STEP", "FAILED", name="b", attempt=3)
    seeded["done"] = execution_row(function, "SUCCEEDED")
    make_op(seeded["done"], "d1", "STEP", "SUCCEEDED", name="a")
    # Stopped and timed out while waiting: the callbacks stay STARTED, their deadlines moot.
    for key, status in (("stopped", "STOPPED"), ("timed_out", "TIMED_OUT")):
        seeded[key] = execution = execution_row(function, status)
        make_op(execution, "g", "CONTEXT", "STARTED", sub_type="WaitForCallback", name="verify-email")
        make_op(execution, "x", "STEP", "STARTED", name="side-job")
        make_op(
            execution,
            "cb",
            "CALLBACK",
            "STARTED",
            parent_id="g",
            name="verify-email create callback id",
            callback_timeout_at=later,
        )
    seeded["idle"] = execution_row(function, "RUNNING")
    return seeded


def step_cells(page: str) -> dict[int, str]:
    """Execution pk -> the text of its row's "Current step" cell (tags removed)."""
    cells = {}
    for row in page.split('id="execution-row-')[1:]:
        pk = int(row.split('"')[0])
        cell = row.split('data-testid="row-step">', 1)[1].split("</td>", 1)[0]
        cells[pk] = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", cell)).strip())
    return cells


@pytest.mark.django_db
@pytest.mark.parametrize("extra", [0, 25])
def test_the_current_step_column_in_one_query_per_page(
    cast: Cast, extra: int, django_assert_num_queries: Callable[..., Any]
) -> None:
    function = Function.objects.create(name="orders", handler="examples.booking:handler")
    seeded = seed_every_state(function)
    for n in range(extra):  # more rows, each with an open step: the page still costs the same
        make_op(execution_row(function, "RUNNING"), "x", "STEP", "STARTED", name=f"step-{n}")
    client = cast.client("operator")
    # the page, the current steps, then the chip counts and function names (console cache)
    with django_assert_num_queries(AUTH + 4):
        page = client.get("/executions/").content.decode()
    cells = step_cells(page)
    assert len(cells) == len(seeded) + extra
    said = {key: cells[execution.pk] for key, execution in seeded.items()}
    assert said["step"] == "step “charge” (attempt 2)"
    # Then the console's countdown, which console.js ticks ("in 4 min 59 s"), as the timeline says it.
    countdown = r"in (4 min \d+ s|5 min)"
    assert re.fullmatch(rf"retrying step “reserve” \(attempt 2\) {countdown}", said["retry"])
    assert re.fullmatch(rf"waiting on timer “cool-off”, ends {countdown}", said["wait"])
    assert said["invoke"] == "waiting on invoke of chain-payment"
    assert said["map"] == "step “batch-2” +2 more"
    assert said["approval"] == "waiting on approval “Publish: Q3 report”"
    assert said["callback"] == "waiting on callback “review”"
    assert said["failed"] == "failed at step “b”"
    # Ended executions say where they ended, never a live wait or countdown.
    assert said["stopped"] == "stopped at callback “verify-email”"
    assert said["timed_out"] == "timed out at callback “verify-email”"
    assert said["done"] == said["idle"] == "\N{EN DASH}"  # nothing to say
    assert page.count("<time data-countdown") == 2 and " left" not in page
    # A live push renders the same rows (one query for their steps, whatever their number).
    pushed_ids = [seeded[key].pk for key in ("stopped", "wait", "failed")]
    rows = fragments.load(pushed_ids)
    with django_assert_num_queries(1):
        pushed = step_cells(fragments.render_list_push(rows))
    assert pushed == {pk: cells[pk] for pk in pushed_ids}
    # Labels show under the names, and the name search finds them.
    assert '<span class="row-label" data-testid="row-label">ORD-7</span>' in page
    found = client.get("/executions/?q=ord-7").content.decode()
    assert list(step_cells(found)) == [seeded["failed"].pk]


# --- labels from approvals, everywhere they show -------------------------------------------------


@pytest.fixture
def driver() -> Iterator[EngineDriver]:
    yield from running_driver()


@pytest.mark.django_db(transaction=True)
def test_labels_from_the_input_or_the_approval_title_across_the_console(
    cast: Cast, driver: EngineDriver
) -> None:
    by_title = start_flow(driver, APPROVAL_FUNCTION, {"title": "Publish: invoice 42"}).execution
    function_register(
        name=APPROVAL_FUNCTION,
        handler=handler_path(approval_handler),
        execution_timeout=7200,
        label_field="ref",
    )
    by_input = start_flow(
        driver, APPROVAL_FUNCTION, {"title": "Publish: invoice 43", "ref": "INV-43"}
    ).execution
    by_title.refresh_from_db()
    by_input.refresh_from_db()
    assert (by_title.label, by_input.label) == ("Publish: invoice 42", "INV-43")  # the input's kept

    operator = cast.client("operator")
    listing = operator.get("/executions/").content.decode()
    said = step_cells(listing)[by_title.pk]
    assert re.fullmatch(r"waiting on approval “Publish: invoice 42”, times out in (59 min \d+ s|1 h)", said)
    for label in ("Publish: invoice 42", "INV-43"):
        assert f'data-testid="row-label">{label}</span>' in listing
    home = operator.get("/").content.decode()
    assert 'data-testid="row-label">INV-43</span>' in home  # the waiting-on-people board
    compare = operator.get(f"/executions/{by_title.pk}/compare/").content.decode()
    assert re.search(rf'<option value="{by_input.pk}"\s*>INV-43 · ', compare)
    detail = operator.get(f"/executions/{by_input.pk}/").content.decode()
    assert 'data-testid="execution-label"' in detail and ">INV-43</span>" in detail
    # The inbox names the execution by its label, unless that is the request's own title.
    inbox = cast.client("approver").get("/approvals/").content.decode()
    assert '<span data-testid="row-label">INV-43</span>' in inbox
    assert inbox.count('data-testid="row-label"') == 1
