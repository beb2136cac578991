"""Operator actions through the console, on real executions: each is audited, and a refused
or malformed request changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from examples import ledger
from executions.engine.functions import limits_for_version
from executions.models import AuditEntry, Execution, Function, Operation
from tests import console_handlers
from tests.console_support import Cast, finished, make_cast, register_demos
from tests.engine_driver import EngineDriver, engine_driver, refreshed, register, start, started_callback

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cast() -> Cast:
    return make_cast()


@pytest.fixture
def driver() -> Iterator[EngineDriver]:
    register_demos()
    register("approval", console_handlers.approval)
    register("wait-a-minute", console_handlers.wait_a_minute)
    with engine_driver() as running:
        yield running
    ledger.close()


def waiting_for_decision(driver: EngineDriver, doc: str = "d-1") -> tuple[Execution, Operation]:
    execution = start("approval", {"doc": doc})
    driver.run_until(lambda: started_callback(execution, "decision create callback id") is not None)
    return refreshed(execution), started_callback(execution, "decision create callback id")


def audit_actions() -> list[str]:
    return list(AuditEntry.objects.order_by("id").values_list("action", flat=True))


# --- stop, pause, resume ------------------------------------------------------------------


def test_stop_needs_a_reason_then_stops_and_is_audited(cast: Cast, driver: EngineDriver) -> None:
    execution, _ = waiting_for_decision(driver)
    client = cast.client("operator")
    page = client.get(f"/executions/{execution.pk}/stop/")
    assert page.status_code == 200 and b"Stop this execution?" in page.content

    refused = client.post(f"/executions/{execution.pk}/stop/", {"reason": ""})
    assert refused.status_code == 400 and b"Say why" in refused.content
    assert refreshed(execution).status == "RUNNING" and audit_actions() == []

    done = client.post(f"/executions/{execution.pk}/stop/", {"reason": "customer cancelled"})
    assert done.status_code == 302 and done["Location"] == f"/executions/{execution.pk}/"
    stopped = refreshed(execution)
    assert stopped.status == "STOPPED" and stopped.error == {"ErrorMessage": "customer cancelled"}
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.channel, entry.actor_name, entry.target) == (
        "execution.stop",
        "console",
        "operator",
        execution.arn,
    )
    assert entry.details["reason"] == "customer cancelled"


def test_stopping_a_finished_execution_is_refused_with_the_reason(cast: Cast, driver: EngineDriver) -> None:
    done = finished(driver, start("order-processing", {"order_id": "o-1"}))
    response = cast.client("operator").post(f"/executions/{done.pk}/stop/", {"reason": "oops"})
    assert response.status_code == 400 and b"already SUCCEEDED" in response.content
    assert refreshed(done).status == "SUCCEEDED" and audit_actions() == []


def test_pause_and_resume(cast: Cast, driver: EngineDriver) -> None:
    execution = start("wait-a-minute")
    driver.settle()
    client = cast.client("admin")
    assert client.post(f"/executions/{execution.pk}/pause/", {"reason": "maintenance"}).status_code == 302
    assert refreshed(execution).status == "PAUSED"
    assert b'id="action-resume"' in client.get(f"/executions/{execution.pk}/").content
    assert client.post(f"/executions/{execution.pk}/resume/").status_code == 302
    assert refreshed(execution).status == "RUNNING"
    assert audit_actions() == ["execution.pause", "execution.resume"]
    assert finished(driver, execution).status == "SUCCEEDED"


def test_resume_of_a_running_execution_is_a_no_op_but_a_finished_one_says_why(
    cast: Cast, driver: EngineDriver
) -> None:
    done = finished(driver, start("order-processing", {"order_id": "o-2"}))
    response = cast.client("operator").post(f"/executions/{done.pk}/pause/", follow=True)
    assert b"Cannot pause an execution that is SUCCEEDED" in response.content
    assert refreshed(done).status == "SUCCEEDED"


# --- redrive and re-run ---------------------------------------------------------------------


def test_redrive_preview_then_redrive_after_switching_the_fault_off(cast: Cast, driver: EngineDriver) -> None:
    payload = {"booking_id": "rd-1", "max_attempts": 2, "faults": {"booking.reserve_room": 50}}
    failed = finished(driver, start("booking", payload))
    assert failed.status == "FAILED"
    client = cast.client("operator")

    preview = client.get(f"/executions/{failed.pk}/redrive/").content.decode()
    rerun = preview.split('data-testid="redrive-rerun">')[1].split("</ul>")[0]
    replayed = preview.split('data-testid="redrive-replayed">')[1].split("</ul>")[0]
    assert "reserve-room" in rerun and "check-availability" not in rerun
    assert "check-availability" in replayed

    assert (
        client.post("/faults/switch/", {"point": "booking.reserve_room", "faults": "off"}).status_code == 302
    )
    response = client.post(f"/executions/{failed.pk}/redrive/", {"reason": "outage over"})
    assert response.status_code == 302
    assert finished(driver, failed).status == "SUCCEEDED"
    assert audit_actions() == ["fault.disable", "execution.redrive"]
    assert b"switch" in client.get("/faults/").content


def test_redrive_form_keeps_interrupted_steps_failed_unless_the_box_is_ticked(
    cast: Cast, driver: EngineDriver
) -> None:
    payload = {"booking_id": "rd-i", "faults": {"payment.charge": "interrupt"}}
    failed = finished(driver, start("booking", payload))
    assert failed.status == "FAILED"
    client = cast.client("operator")
    page = client.get(f"/executions/{failed.pk}/redrive/").content.decode()
    interrupted = page.split('data-testid="redrive-interrupted">')[1].split("</ul>")[0]
    replayed = page.split('data-testid="redrive-replayed">')[1].split("</ul>")[0]
    assert "take-deposit" in interrupted and "take-deposit" not in replayed
    assert 'name="rerun_interrupted"' in page

    assert client.post(f"/executions/{failed.pk}/redrive/", {"reason": "worker died"}).status_code == 302
    assert finished(driver, failed).status == "FAILED"  # the handler got StepInterruptedError again
    assert ledger.count("payment", "charge", "rd-i") == 1
    accepted = {"reason": "checked with the bank", "rerun_interrupted": "on"}
    assert client.post(f"/executions/{failed.pk}/redrive/", accepted).status_code == 302
    assert finished(driver, failed).status == "SUCCEEDED"
    assert ledger.count("payment", "charge", "rd-i") == 2
    choices = AuditEntry.objects.filter(action="execution.redrive").order_by("id")
    assert [(e.channel, e.details["rerun_interrupted"]) for e in choices] == [
        ("console", False),
        ("console", True),
    ]
    assert all(e.details["interrupted"] == ["take-deposit"] for e in choices)


def test_redrive_page_of_a_running_execution_offers_nothing(cast: Cast, driver: EngineDriver) -> None:
    execution, _ = waiting_for_decision(driver)
    page = cast.client("operator").get(f"/executions/{execution.pk}/redrive/")
    assert b"Only FAILED or TIMED_OUT executions can be redriven" in page.content
    refused = cast.client("operator").post(f"/executions/{execution.pk}/redrive/", {"reason": "x"})
    assert refused.status_code == 400 and refreshed(execution).status == "RUNNING"


def test_rerun_with_bad_json_changes_nothing_and_with_edited_input_starts_a_new_one(
    cast: Cast, driver: EngineDriver
) -> None:
    original = finished(driver, start("order-processing", {"order_id": "o-3"}))
    client = cast.client("operator")
    form = client.get(f"/executions/{original.pk}/rerun/").content.decode()
    assert "&quot;order_id&quot;: &quot;o-3&quot;" in form  # the input, pretty-printed for editing

    bad = client.post(f"/executions/{original.pk}/rerun/", {"input_payload": '{"order_id": '})
    assert bad.status_code == 400 and b"Not valid JSON" in bad.content
    assert Execution.objects.count() == 1 and audit_actions() == []

    good = client.post(f"/executions/{original.pk}/rerun/", {"input_payload": '{"order_id": "o-4"}'})
    new = Execution.objects.exclude(pk=original.pk).get()
    assert good["Location"] == f"/executions/{new.pk}/"
    assert json.loads(new.input_payload) == {"order_id": "o-4"}
    assert finished(driver, new).status == "SUCCEEDED"
    assert AuditEntry.objects.get().details == {"original": original.arn}


# --- callbacks by hand -----------------------------------------------------------------------


def test_complete_a_callback_by_hand_with_json(cast: Cast, driver: EngineDriver) -> None:
    execution, op = waiting_for_decision(driver)
    client = cast.client("operator")
    detail = client.get(f"/executions/{execution.pk}/").content.decode()
    assert f"/executions/{execution.pk}/callbacks/{op.operation_id}/" in detail
    url = f"/executions/{execution.pk}/callbacks/{op.operation_id}/"
    assert client.get(url).status_code == 200

    bad = client.post(url, {"outcome": "succeed", "succeed-result": "{approved: yes}"})
    assert bad.status_code == 400 and b"Not valid JSON" in bad.content
    assert Operation.objects.get(pk=op.pk).status == "STARTED" and audit_actions() == []

    good = client.post(url, {"outcome": "succeed", "succeed-result": '{"approved": true}'})
    assert good.status_code == 302
    done = finished(driver, execution)
    decision = json.loads(done.result)["decision"]  # the callback's raw result, as the handler saw it
    assert json.loads(decision) == {"approved": True}
    assert audit_actions() == ["callback.succeed"]

    closed = client.get(url)
    assert b"no longer waiting" in closed.content


def test_fail_a_callback_by_hand(cast: Cast, driver: EngineDriver) -> None:
    execution, op = waiting_for_decision(driver)
    url = f"/executions/{execution.pk}/callbacks/{op.operation_id}/"
    client = cast.client("admin")
    missing = client.post(url, {"outcome": "fail", "fail-error_type": "Rejected", "fail-error_message": ""})
    assert missing.status_code == 400 and Operation.objects.get(pk=op.pk).status == "STARTED"
    response = client.post(
        url, {"outcome": "fail", "fail-error_type": "Rejected", "fail-error_message": "no"}
    )
    assert response.status_code == 302
    assert "failed" in json.loads(finished(driver, execution).result)
    entry = AuditEntry.objects.get()
    assert entry.action == "callback.fail" and entry.details["error"]["ErrorType"] == "Rejected"


def test_viewers_cannot_complete_callbacks(cast: Cast, driver: EngineDriver) -> None:
    execution, op = waiting_for_decision(driver)
    url = f"/executions/{execution.pk}/callbacks/{op.operation_id}/"
    assert cast.client("viewer").get(url).status_code == 403
    assert cast.client("viewer").post(url, {"outcome": "succeed", "succeed-result": "{}"}).status_code == 403
    assert b"complete-callback" not in cast.client("viewer").get(f"/executions/{execution.pk}/").content
    assert Operation.objects.get(pk=op.pk).status == "STARTED"


# --- the registry ------------------------------------------------------------------------------


FUNCTION_FORM = {"description": "", "execution_timeout": "300", "retention_days": "7"}


def test_function_create_imports_and_checks_the_handler(cast: Cast, driver: EngineDriver) -> None:
    client = cast.client("admin")
    cases = [
        ("tests.console_handlers:missing", "on", b"Cannot import handler"),
        ("not a path", "on", b"Handler must look like"),
        ("tests.console_handlers:NOT_CALLABLE", "", b"is not callable"),
        ("tests.console_handlers:plain", "on", b"not a @durable_execution handler"),
        ("tests.console_handlers:approval", "", b"register it as a durable function"),
    ]
    for handler, durable, error in cases:
        response = client.post(
            "/functions/new/", {**FUNCTION_FORM, "name": "fresh", "handler": handler, "durable": durable}
        )
        assert response.status_code == 400 and error in response.content, handler
    assert not Function.objects.filter(name="fresh").exists() and audit_actions() == []

    ok = client.post(
        "/functions/new/",
        {**FUNCTION_FORM, "name": "fresh", "handler": "tests.console_handlers:approval", "durable": "on"},
    )
    assert ok.status_code == 302 and ok["Location"] == "/functions/fresh/"
    plain = client.post(
        "/functions/new/",
        {**FUNCTION_FORM, "name": "plain-one", "handler": "tests.console_handlers:plain", "durable": ""},
    )
    assert plain.status_code == 302
    assert Function.objects.get(name="plain-one").durable is False
    assert audit_actions() == ["function.save", "function.save"]


def test_function_edit_makes_a_new_version_and_keeps_the_name(cast: Cast, driver: EngineDriver) -> None:
    client = cast.client("admin")
    form = client.get("/functions/approval/edit/").content.decode()
    assert "tests.console_handlers:approval" in form
    data = {
        **FUNCTION_FORM,
        "name": "renamed",
        "handler": "tests.console_handlers:wait_a_minute",
        "durable": "on",
    }
    assert client.post("/functions/approval/edit/", data).status_code == 302
    function = Function.objects.get(name="approval")
    assert function.version == 2 and function.handler == "tests.console_handlers:wait_a_minute"
    assert not Function.objects.filter(name="renamed").exists()
    versions = client.get("/functions/approval/").content.decode()
    assert (
        "tests.console_handlers:approval" in versions and "tests.console_handlers:wait_a_minute" in versions
    )


def test_function_form_refuses_bad_lambda_settings_with_the_registrys_messages(
    cast: Cast, driver: EngineDriver
) -> None:
    client = cast.client("admin")
    base = {**FUNCTION_FORM, "name": "tuned", "handler": "tests.console_handlers:approval", "durable": "on"}
    refused = client.post(
        "/functions/new/",
        {
            **base,
            "timeout_seconds": "901",
            "memory_mb": "64",
            "environment": "STAGE=dev\nAWS_REGION=eu-west-1",
        },
    )
    page = refused.content.decode()
    assert refused.status_code == 400
    # Every field's error at once, each next to its field, in the registry's own words.
    assert "Timeout must be a whole number of seconds from 1 to 900, got 901" in page
    assert "MemorySize must be a whole number of MB from 128 to 10,240, got 64" in page
    assert "Environment variable AWS_REGION is reserved by Lambda" in page
    for environment, error in [
        ("no equals sign", "Expected KEY=VALUE, got &#x27;no equals sign&#x27;"),
        ("MY-VAR=1", "Environment variable name &#x27;MY-VAR&#x27; is invalid"),
        ("BIG=" + "x" * 4096, "Lambda allows at most 4 KB"),
    ]:
        response = client.post("/functions/new/", {**base, "environment": environment})
        assert response.status_code == 400 and error in response.content.decode(), environment
    assert not Function.objects.filter(name="tuned").exists() and audit_actions() == []


def test_function_form_sets_lambda_settings_and_each_change_is_a_version(
    cast: Cast, driver: EngineDriver
) -> None:
    client = cast.client("admin")
    created = client.post(
        "/functions/new/",
        {
            **FUNCTION_FORM,
            "name": "tuned",
            "handler": "tests.console_handlers:approval",
            "durable": "on",
            "timeout_seconds": "60",
            "memory_mb": "1024",
            "environment": "STAGE=prod\r\n\r\nAPI_URL=https://api.example/?q=1\r\n",
        },
    )
    assert created.status_code == 302
    function = Function.objects.get(name="tuned")
    assert (function.version, function.timeout_seconds, function.memory_mb) == (1, 60, 1024)
    assert function.environment == {"STAGE": "prod", "API_URL": "https://api.example/?q=1"}
    running = start("tuned", {"doc": "d-1"})

    form = client.get("/functions/tuned/edit/").content.decode()
    assert 'name="timeout_seconds" value="60"' in form and 'name="memory_mb" value="1024"' in form
    assert "API_URL=https://api.example/?q=1\nSTAGE=prod</textarea>" in form
    # Description, execution timeout and retention are not versioned.
    edit = {**FUNCTION_FORM, "handler": "tests.console_handlers:approval", "durable": "on"}
    settings = {
        "timeout_seconds": "60",
        "memory_mb": "1024",
        "environment": "STAGE=prod\nAPI_URL=https://api.example/?q=1",
    }
    same = client.post("/functions/tuned/edit/", {**edit, **settings, "description": "now described"})
    assert same.status_code == 302 and Function.objects.get(name="tuned").version == 1
    changed = client.post(
        "/functions/tuned/edit/", {**edit, **settings, "memory_mb": "2048", "environment": "STAGE=canary"}
    )
    assert changed.status_code == 302
    function = Function.objects.get(name="tuned")
    assert (function.version, function.memory_mb, function.environment) == (2, 2048, {"STAGE": "canary"})
    old = limits_for_version(running.function_id, running.function_version)
    assert (old.memory_mb, old.environment_variables["STAGE"]) == (1024, "prod")

    detail = client.get("/functions/tuned/").content.decode()
    assert (
        '<dd id="function-timeout">60 s</dd>' in detail and '<dd id="function-memory">2048 MB</dd>' in detail
    )
    assert '<tr data-version="1">' in detail and '<tr data-version="2">' in detail
    assert "1024 MB" in detail and "STAGE=prod" in detail and "STAGE=canary" in detail


def test_disable_refuses_new_executions_with_a_clear_error_then_enable(
    cast: Cast, driver: EngineDriver
) -> None:
    client = cast.client("admin")
    unconfirmed = client.post("/functions/approval/enable/", {"enabled": "0"})
    assert unconfirmed["Location"] == "/functions/approval/disable/"  # the confirmation page
    assert Function.objects.get(name="approval").enabled is True
    confirm = client.get("/functions/approval/disable/").content.decode()
    assert 'id="confirm-disable"' in confirm and 'name="confirmed" value="1"' in confirm
    assert client.post("/functions/approval/enable/", {"enabled": "0", "confirmed": "1"}).status_code == 302
    assert Function.objects.get(name="approval").enabled is False
    detail = client.get("/functions/approval/").content.decode()
    assert 'id="function-start"' not in detail and 'id="function-enable"' in detail  # no Start
    assert client.get("/functions/approval/start/")["Location"] == "/functions/approval/"
    refused = client.post("/functions/approval/start/", {"input_payload": "{}"})
    assert refused.status_code == 400 and b"Function approval is disabled" in refused.content
    assert not Execution.objects.exists()
    assert client.post("/functions/approval/enable/", {"enabled": "1"}).status_code == 302
    assert audit_actions() == ["function.disable", "function.enable"]


def test_start_from_the_registry(cast: Cast, driver: EngineDriver) -> None:
    client = cast.client("operator")
    bad = client.post("/functions/approval/start/", {"input_payload": "[1, 2"})
    assert bad.status_code == 400 and b"Not valid JSON" in bad.content and not Execution.objects.exists()
    response = client.post(
        "/functions/approval/start/", {"name": "from-console", "input_payload": '{"doc": "x"}'}
    )
    execution = Execution.objects.get()
    assert response["Location"] == f"/executions/{execution.pk}/"
    assert execution.name == "from-console" and execution.started_by == cast["operator"]
    assert audit_actions() == ["execution.start"]
    again = client.post(
        "/functions/approval/start/", {"name": "from-console", "input_payload": '{"doc": "other"}'}
    )
    assert again.status_code == 400 and b"already started" in again.content


# --- reading ---------------------------------------------------------------------------------


def test_detail_shows_the_nested_timeline_history_and_invocations(cast: Cast, driver: EngineDriver) -> None:
    execution = finished(driver, start("batch-processing", {"record_count": 12, "batch_size": 4}))
    page = cast.client("viewer").get(f"/executions/{execution.pk}/").content.decode()
    assert page.count('data-depth="0"') >= 2 and 'data-depth="1"' in page and 'data-depth="2"' in page
    assert '<span class="kind">MAP</span>' in page and '<span class="kind">ITEM</span>' in page
    assert 'id="history-table"' in page and "ExecutionSucceeded" in page
    assert 'data-testid="invocation-row"' in page
    assert 'id="viewer-input"' in page and 'id="viewer-result"' in page


def test_chained_invokes_link_to_the_child_execution(cast: Cast, driver: EngineDriver) -> None:
    parent = finished(driver, start("function-chaining", {"order_id": "c-1"}))
    child = Execution.objects.filter(parent=parent).first()
    assert child is not None
    page = cast.client("viewer").get(f"/executions/{parent.pk}/").content.decode()
    assert f'href="/executions/{child.pk}/" data-testid="child-link"' in page
    # The child links back to the parent's invoke row, naming the parent by its label.
    assert child.label == "c-1"  # chain-customer is labelled by the order id it was given
    back = cast.client("viewer").get(f"/executions/{child.pk}/").content.decode()
    assert (
        f'href="/executions/{parent.pk}/#op-{child.parent_operation_id}" data-testid="parent-link">'
        "function-chaining · c-1</a>" in back
    )
    invoke = Operation.objects.get(execution=parent, operation_id=child.parent_operation_id)
    assert f"through its invoke “{invoke.name}”" in back


def test_history_filters_by_type_and_htmx_gets_only_the_region(cast: Cast, driver: EngineDriver) -> None:
    execution = finished(driver, start("order-processing", {"order_id": "o-5"}))
    response = cast.client("viewer").get(
        f"/executions/{execution.pk}/history/?type=StepSucceeded", headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert "<html" not in html and html.strip().startswith(
        f'<section class="panel" id="execution-{execution.pk}-history"'
    )
    types = {part.split('"')[0] for part in html.split('data-event-type="')[1:]}
    assert types == {"StepSucceeded"}


def test_download_input_result_and_error(cast: Cast, driver: EngineDriver) -> None:
    execution = finished(driver, start("order-processing", {"order_id": "o-6"}))
    client = cast.client("viewer")
    response = client.get(f"/executions/{execution.pk}/download/input/")
    assert json.loads(response.content) == {"order_id": "o-6"}
    assert response["Content-Disposition"] == f'attachment; filename="{execution.name}-input.json"'
    assert json.loads(client.get(f"/executions/{execution.pk}/download/result/").content)
    assert client.get(f"/executions/{execution.pk}/download/secrets/").status_code == 404


def test_step_attempts_diff(cast: Cast, driver: EngineDriver) -> None:
    payload = {"booking_id": "at-1", "max_attempts": 4, "faults": {"booking.reserve_room": 2}}
    execution = finished(driver, start("booking", payload))
    assert execution.status == "SUCCEEDED"
    op = Operation.objects.get(execution=execution, name="reserve-room")
    client = cast.client("viewer")
    assert (
        f"/steps/{op.operation_id}/attempts/" in client.get(f"/executions/{execution.pk}/").content.decode()
    )
    page = client.get(f"/executions/{execution.pk}/steps/{op.operation_id}/attempts/").content.decode()
    assert page.count('data-testid="attempt-row"') == 3
    assert page.count('data-testid="attempt-diff"') == 2
    assert "Attempt 3 (right) against attempt 2 (left)" in page and 'class="chg"' in page


def test_compare_two_executions_of_a_function(cast: Cast, driver: EngineDriver) -> None:
    left = finished(driver, start("order-processing", {"order_id": "cmp-1"}))
    right = finished(driver, start("order-processing", {"order_id": "cmp-2", "items": []}))
    client = cast.client("viewer")
    page = client.get(f"/executions/{left.pk}/compare/").content.decode()
    assert f'<option value="{right.pk}"' in page
    diff = client.get(f"/executions/{left.pk}/compare/?with={right.pk}").content.decode()
    assert 'id="diff-input"' in diff and "cmp-2" in diff and 'id="diff-operations"' in diff
    other = finished(driver, start("booking", {"booking_id": "cmp-3"}))
    assert client.get(f"/executions/{left.pk}/compare/?with={other.pk}").status_code == 404
