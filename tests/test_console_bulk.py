"""Bulk stop and redrive: confirmation with a reason, a background job, progress, audit."""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest

from examples import ledger
from executions import bulk_jobs, tasks
from executions.engine import clock, effects
from executions.models import AuditEntry, BulkJob, Execution
from executions.workers import scheduler
from executions.workers.celery_sink import CeleryWorkSink
from tests import console_handlers
from tests.console_support import Cast, finished, make_cast, register_demos
from tests.engine_driver import EngineDriver, engine_driver, refreshed, register, start
from tests.polling import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cast() -> Cast:
    return make_cast()


@pytest.fixture
def driver() -> Iterator[EngineDriver]:
    register_demos()
    register("wait-a-minute", console_handlers.wait_a_minute)
    with engine_driver() as running:
        yield running
    ledger.close()


def running(driver: EngineDriver, count: int, function: str = "wait-a-minute") -> list[Execution]:
    executions = [start(function) for _ in range(count)]
    driver.settle()
    return [refreshed(e) for e in executions]


def wait_for_job(job_id: int, timeout: float = 10) -> BulkJob:
    return wait_until(
        lambda: (job := BulkJob.objects.get(pk=job_id)).is_finished and job,
        timeout=timeout,
        message=f"bulk job {job_id} to finish",
    )


def test_bulk_stop_of_a_selection_confirms_asks_why_and_runs_on_a_thread(
    cast: Cast, driver: EngineDriver
) -> None:
    targets = running(driver, 3)
    done = finished(driver, start("order-processing", {"order_id": "b-1"}))
    ids = [str(e.pk) for e in [*targets, done]]
    client = cast.client("operator")

    confirm = client.post("/executions/bulk/", {"action": "stop", "scope": "selection", "ids": ids})
    assert confirm.status_code == 200 and b"Stop 3 of 4 selected executions?" in confirm.content
    reach = confirm.content.decode().split('data-testid="bulk-reach">')[1].split("</p>")[0]
    assert "3 of 4 selected can be stopped</strong>; the job skips the rest: 1 SUCCEEDED." in reach
    assert 'id="bulk-submit">Stop 3</button>' in confirm.content.decode()

    no_reason = client.post(
        "/executions/bulk/", {"action": "stop", "scope": "selection", "ids": ids, "confirmed": "on"}
    )
    assert no_reason.status_code == 400 and b"Say why" in no_reason.content
    assert not BulkJob.objects.exists()

    started = client.post(
        "/executions/bulk/",
        {"action": "stop", "scope": "selection", "ids": ids, "confirmed": "on", "reason": "bad deploy"},
    )
    job = BulkJob.objects.get()
    assert started["Location"] == f"/executions/bulk/{job.pk}/"
    job = wait_for_job(job.pk)  # embedded (a worker pool in this process): a thread ran it
    assert (job.status, job.total, job.succeeded, job.skipped, job.failed) == ("DONE", 4, 3, 1, 0)
    assert job.problems == [
        {"id": done.pk, "arn": done.arn, "outcome": "skipped", "message": "already SUCCEEDED"}
    ]
    assert all(refreshed(e).status == "STOPPED" for e in targets)
    actions = list(AuditEntry.objects.order_by("id").values_list("action", "actor_name"))
    assert actions == [("bulk.stop", "operator")] + [("execution.stop", "operator")] * 3
    assert AuditEntry.objects.filter(action="execution.stop").first().details == {"reason": "bad deploy"}

    page = client.get(f"/executions/bulk/{job.pk}/").content.decode()
    assert 'data-status="DONE"' in page and "already SUCCEEDED" in page and 'id="bulk-succeeded">3<' in page
    assert 'data-testid="bulk-scope">4 selected executions</span>' in page


def test_bulk_by_filter_acts_on_what_the_filter_matches_that_the_action_applies_to(
    cast: Cast, driver: EngineDriver
) -> None:
    waiting = running(driver, 2)
    other = running(driver, 1, "document-approval")
    done = finished(driver, start("booking", {"booking_id": "b-2"}))
    client = cast.client("admin")
    query = "function=wait-a-minute"
    confirm = client.post("/executions/bulk/", {"action": "stop", "scope": "filter", "query": query})
    assert b"Stop 2 executions?" in confirm.content
    assert b"that can be stopped (RUNNING or PAUSED)" in confirm.content
    client.post(
        "/executions/bulk/",
        {"action": "stop", "scope": "filter", "query": query, "confirmed": "on", "reason": "r"},
    )
    job = wait_for_job(BulkJob.objects.get().pk)
    assert sorted(job.target_ids) == sorted(e.pk for e in waiting) and job.succeeded == 2
    assert refreshed(other[0]).status == "RUNNING" and refreshed(done).status == "SUCCEEDED"


def test_bulk_redrive_by_status_filter(cast: Cast, driver: EngineDriver) -> None:
    failed = [
        finished(
            driver,
            start(
                "booking", {"booking_id": f"f-{n}", "max_attempts": 1, "faults": {"booking.reserve_room": 9}}
            ),
        )
        for n in range(2)
    ]
    assert {e.status for e in failed} == {"FAILED"}
    running(driver, 1)
    client = cast.client("operator")
    assert (
        client.post("/faults/switch/", {"point": "booking.reserve_room", "faults": "off"}).status_code == 302
    )
    client.post(
        "/executions/bulk/",
        {
            "action": "redrive",
            "scope": "filter",
            "query": "status=FAILED",
            "confirmed": "on",
            "reason": "fixed",
        },
    )
    job = wait_for_job(BulkJob.objects.get().pk)
    assert job.succeeded == 2 and job.total == 2
    assert all(finished(driver, e).status == "SUCCEEDED" for e in failed)


def test_bulk_redrive_names_interrupted_steps_and_runs_them_again_only_if_accepted(
    cast: Cast, driver: EngineDriver
) -> None:
    payload = {"faults": {"payment.charge": "interrupt"}}
    failed = [finished(driver, start("booking", {"booking_id": f"bi-{n}", **payload})) for n in range(2)]
    ids = [str(e.pk) for e in failed]
    client = cast.client("operator")
    confirm = client.post("/executions/bulk/", {"action": "redrive", "scope": "selection", "ids": ids})
    warning = confirm.content.decode().split('data-testid="bulk-interrupted">')[1].split("</section>")[0]
    assert "2 of these executions have interrupted operations" in warning
    assert warning.count("take-deposit") == 2 and 'name="rerun_interrupted"' in warning

    form = {"action": "redrive", "scope": "selection", "confirmed": "on", "reason": "charges checked"}
    client.post("/executions/bulk/", {**form, "ids": ids[:1]})
    kept_job = wait_for_job(BulkJob.objects.get().pk)
    client.post("/executions/bulk/", {**form, "ids": ids[1:], "rerun_interrupted": "on"})
    accepted_job = wait_for_job(BulkJob.objects.exclude(pk=kept_job.pk).get().pk)
    assert (kept_job.rerun_interrupted, accepted_job.rerun_interrupted) == (False, True)
    assert kept_job.succeeded == accepted_job.succeeded == 1
    assert [finished(driver, e).status for e in failed] == ["FAILED", "SUCCEEDED"]
    assert [ledger.count("payment", "charge", f"bi-{n}") for n in range(2)] == [1, 2]
    redrives = AuditEntry.objects.filter(action__in=("bulk.redrive", "execution.redrive")).order_by("id")
    assert [(e.action, e.details["rerun_interrupted"]) for e in redrives] == [
        ("bulk.redrive", False),
        ("execution.redrive", False),
        ("bulk.redrive", True),
        ("execution.redrive", True),
    ]
    assert (
        b"<strong>run again</strong> (accepted)" in client.get(f"/executions/bulk/{accepted_job.pk}/").content
    )


def test_nothing_to_do_says_so(cast: Cast, driver: EngineDriver) -> None:
    finished(driver, start("order-processing", {"order_id": "b-3"}))
    response = cast.client("operator").post(
        "/executions/bulk/", {"action": "redrive", "scope": "filter", "query": "status=SUCCEEDED"}
    )
    assert b"Nothing to do: no execution matches that can be redriven." in response.content


def test_an_empty_selection_is_an_error(cast: Cast, driver: EngineDriver) -> None:
    response = cast.client("operator").post("/executions/bulk/", {"action": "stop", "scope": "selection"})
    assert response.status_code == 400 and b"Select at least one execution" in response.content


def test_progress_region_polls_until_done(
    cast: Cast, driver: EngineDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk_jobs, "bulk_job_dispatch", lambda job_id: None)  # run it by hand below
    targets = running(driver, 2)
    cast.client("operator").post(
        "/executions/bulk/",
        {
            "action": "stop",
            "scope": "selection",
            "ids": [e.pk for e in targets],
            "confirmed": "on",
            "reason": "r",
        },
    )
    job = BulkJob.objects.get()
    client = cast.client("operator")
    pending = client.get(f"/executions/bulk/{job.pk}/", headers={"HX-Request": "true"}).content.decode()
    assert pending.lstrip().startswith("<section") and 'hx-trigger="every 1s"' in pending
    assert bulk_jobs.bulk_job_run(job.pk) is not None
    assert bulk_jobs.bulk_job_run(job.pk) is None  # claimed and finished: a second run does nothing
    done = client.get(f"/executions/bulk/{job.pk}/", headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in done and 'data-status="DONE"' in done


def test_an_interrupted_job_resumes_where_it_stopped(cast: Cast, driver: EngineDriver) -> None:
    targets = running(driver, 3)
    job = BulkJob.objects.create(
        action="stop",
        scope="selection",
        target_ids=[e.pk for e in targets],
        total=3,
        processed=1,
        succeeded=1,
        status="RUNNING",
        created_at=targets[0].started_at,
        heartbeat_at=targets[0].started_at - datetime.timedelta(minutes=5),  # its runner died back then
        created_by=cast["operator"],
        created_by_name="operator",
    )
    job = bulk_jobs.bulk_job_run(job.pk)
    assert job is not None and (job.processed, job.succeeded) == (3, 3)
    assert refreshed(targets[0]).status == "RUNNING"  # counted before the interruption, not redone
    assert {refreshed(e).status for e in targets[1:]} == {"STOPPED"}


def interrupted_job(cast: Cast, targets: list[Execution], quiet_for: float, **fields: object) -> BulkJob:
    """A job stopped by hand at 1 of its targets, its runner gone ``quiet_for`` seconds ago."""
    now = clock.now()
    return BulkJob.objects.create(
        action="stop",
        scope="selection",
        target_ids=[e.pk for e in targets],
        total=len(targets),
        processed=1,
        succeeded=1,
        status="RUNNING",
        created_at=now - datetime.timedelta(minutes=5),
        dispatched_at=now - datetime.timedelta(minutes=5),
        heartbeat_at=now - datetime.timedelta(seconds=quiet_for),
        claimed_by="dead-host:1:gone",
        runs=1,
        created_by=cast["operator"],
        created_by_name="operator",
        **fields,
    )


def test_the_scheduler_resumes_a_job_whose_runner_went_quiet(cast: Cast, driver: EngineDriver) -> None:
    targets = running(driver, 3)
    job = interrupted_job(cast, targets, quiet_for=10)
    assert scheduler.tick() == 0  # 10 s without progress: its runner may still be busy
    assert BulkJob.objects.get(pk=job.pk).runs == 1

    driver.clock.advance(21)  # now 31 s: past DURABLE_BULK_STALE_SECONDS (30)
    assert bulk_jobs.bulk_jobs_redispatch_stale(clock.now()) == 1  # a runner thread, embedded
    job = wait_for_job(job.pk)
    assert (job.status, job.processed, job.succeeded, job.runs) == ("DONE", 3, 3, 2)
    assert job.claimed_by != "dead-host:1:gone"
    assert refreshed(targets[0]).status == "RUNNING"  # counted before the interruption, not redone
    assert {refreshed(e).status for e in targets[1:]} == {"STOPPED"}
    assert bulk_jobs.bulk_jobs_redispatch_stale(clock.now()) == 0  # done: nothing to resume


def test_a_job_nobody_runs_is_sent_again_once_per_interval(
    cast: Cast, driver: EngineDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[int] = []
    monkeypatch.setattr(bulk_jobs, "bulk_job_dispatch", sent.append)  # its messages are all lost
    job = interrupted_job(cast, running(driver, 2), quiet_for=31)
    for _ in range(60):  # 30 s of scheduler ticks
        scheduler.tick()
        driver.clock.advance(0.5)
    assert sent == [job.pk]
    driver.clock.advance(1)
    scheduler.tick()
    assert sent == [job.pk, job.pk]


def test_with_workers_elsewhere_the_job_goes_to_celery(cast: Cast, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[int] = []
    monkeypatch.setattr(tasks.run_bulk_job, "delay", sent.append)
    # What ExecutionsConfig.ready registers when CELERY_BROKER_URL is set.
    monkeypatch.setattr(effects, "_broker_sink", CeleryWorkSink())
    bulk_jobs.bulk_job_dispatch(41)  # no embedded worker pool in this process
    assert sent == [41]
