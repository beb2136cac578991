"""Query counts of the console pages: the same whatever the number of rows (N+1 regressions fail).

Each page is asserted with an exact count at two sizes. The first four queries
of every request are the session, the user and the user's and groups'
permissions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from django.test import Client

from examples import ledger
from executions import operator, services
from executions.audit import Actor
from executions.models import Execution
from tests.console_support import Cast, finished, make_cast, register_demos
from tests.engine_driver import EngineDriver, engine_driver, start

AUTH = 4  # session, user, user permissions, group permissions


@pytest.fixture
def cast(db: None) -> Cast:
    return make_cast()


def seed_running(count: int) -> list[Execution]:
    return [
        services.execution_start(
            function="order-processing", input_payload=f'{{"order_id": "q-{n}"}}'
        ).execution
        for n in range(count)
    ]


def get_ok(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, path


@pytest.mark.django_db
@pytest.mark.parametrize("rows", [5, 30])
def test_execution_list(cast: Cast, rows: int, django_assert_num_queries: Callable[..., object]) -> None:
    register_demos()
    executions = seed_running(rows)
    operator.stop(Actor.cli(), executions[0].arn, "one of each")
    client = cast.client("operator")
    # page + current steps + status chips + the function select (the last two from the
    # console cache once read)
    with django_assert_num_queries(AUTH + 4):
        get_ok(client, "/executions/")
    with django_assert_num_queries(AUTH + 3):  # chips of other filters; the same function select
        get_ok(client, "/executions/?status=RUNNING&function=order-processing&q=q-&after=24h")


@pytest.mark.django_db
@pytest.mark.parametrize("rows", [5, 30])
def test_home_functions_audit_and_faults(
    cast: Cast, rows: int, django_assert_num_queries: Callable[..., object]
) -> None:
    register_demos()
    for execution in seed_running(rows):
        operator.pause(Actor.cli(), execution.arn)
    client = cast.client("admin")
    # counts by status, the waiting board, two charts of two queries each
    with django_assert_num_queries(AUTH + 6):
        get_ok(client, "/")
    with django_assert_num_queries(AUTH + 2):  # functions, their stats
        get_ok(client, "/functions/")
    with django_assert_num_queries(AUTH + 4):  # function, stats, versions, recent executions
        get_ok(client, "/functions/order-processing/")
    with django_assert_num_queries(AUTH + 1):
        get_ok(client, "/audit/")
    with django_assert_num_queries(AUTH + 1):
        get_ok(client, "/faults/")


@pytest.fixture
def driver() -> Iterator[EngineDriver]:
    register_demos()
    with engine_driver() as running:
        yield running
    ledger.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("records", [4, 40])
def test_execution_detail(
    cast: Cast, driver: EngineDriver, records: int, django_assert_num_queries: Callable[..., object]
) -> None:
    """A map over 1 or 10 batches, children and all: the page costs the same queries."""
    execution = finished(driver, start("batch-processing", {"record_count": records, "batch_size": 4}))
    assert execution.status == "SUCCEEDED"
    client = cast.client("operator")
    # the execution (accessor), then operations, invocations, child executions, and the
    # history's event types and its first page (tests/test_console_big_execution.py: 3,000 ops)
    with django_assert_num_queries(AUTH + 6):
        get_ok(client, f"/executions/{execution.pk}/")
    with django_assert_num_queries(AUTH + 6):
        get_ok(client, f"/executions/{execution.pk}/live/")
    with django_assert_num_queries(AUTH + 3):  # the execution, event types, the page
        get_ok(client, f"/executions/{execution.pk}/history/?type=StepSucceeded")
