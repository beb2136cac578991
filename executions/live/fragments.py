"""Live updates, rendering side: the fragments a watching browser receives.

The processes that change executions publish only ids (``executions.live.updates``).
A web process's consumer that receives them renders what its browser shows, with
the same partials the pages render, so a push equals a fresh page:

- a detail page: its execution's header partial, plus a placeholder that makes the
  browser fetch the heavier regions (timeline, history, actions) through the
  permission-checked view. Those carry per-user content and CSRF tokens.
- the list and the home page: the list's row partial for each changed execution.

Fragments are rendered without a request: no user, no CSRF token. Many browsers
watching one execution share one render per web process: each publication carries
a ``batch`` name, and what was rendered for it is kept for a few seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from django.template.loader import render_to_string

from executions.engine import db_retry
from executions.models import Execution, Function
from executions.queries.current_step import attach_current_steps

# The fragments never show these; they can be large.
UNUSED_COLUMNS = ("input_payload", "result", "last_response", "last_inbound_token", "updated_operation_ids")
# Long enough for every consumer of the process to take its turn on the message.
MEMO_SECONDS = 10.0
MEMO_PRUNE_AT = 256


def render_execution_push(execution: Execution) -> str:
    """What an execution's watchers receive: the header, and the refresh placeholder."""
    context = {"execution": execution}
    return render_to_string("executions/detail.html#header", context) + render_to_string(
        "executions/detail.html#live-sync", context
    )


def render_list_push(executions: Iterable[Execution]) -> str:
    rows = list(executions)
    # The rows' "Current step" column: one query for them all, retried like load().
    db_retry.call(lambda: attach_current_steps(rows))
    return "".join(
        render_to_string("executions/list.html#row", {"execution": execution}) for execution in rows
    )


def load(execution_ids: Iterable[int]) -> list[Execution]:
    """The executions the fragments show, newest first, with their functions.

    Two single-table queries rather than a join: a statement that locks two tables
    can deadlock with one that locks them in the other order (a TRUNCATE between
    tests, a migration), and this runs whenever a watched execution changed. Retried
    on transient errors (a restarted server), so a push is late rather than lost.
    """

    def read() -> list[Execution]:
        executions = list(
            Execution.objects.filter(pk__in=list(execution_ids)).defer(*UNUSED_COLUMNS).order_by("-pk")
        )
        functions = Function.objects.in_bulk({e.function_id for e in executions})
        for execution in executions:
            if execution.function_id in functions:
                execution.function = functions[execution.function_id]
        return [e for e in executions if e.function_id in functions]

    return db_retry.call(read)


def execution_fragment(execution_id: int, batch: str) -> str:
    """The detail page's push for one execution; empty once it is gone."""
    return _memo.get(("detail", batch, execution_id), lambda: _detail(execution_id))


def list_fragment(execution_ids: list[int], batch: str) -> str:
    """The list's push: a row for each of these executions that still exists."""
    return _memo.get(("rows", batch, tuple(execution_ids)), lambda: render_list_push(load(execution_ids)))


def _detail(execution_id: int) -> str:
    executions = load([execution_id])
    return render_execution_push(executions[0]) if executions else ""


class _Memo:
    """Fragments rendered for recent publications, so a web process renders each once.

    Keyed by the publication's batch name: a later change is a later batch, so a
    fragment is never reused for a change it was rendered before.
    """

    def __init__(self) -> None:
        self.entries: dict[tuple[object, ...], tuple[float, str]] = {}
        self.lock = threading.Lock()

    def get(self, key: tuple[object, ...], render: Callable[[], str]) -> str:
        now = time.monotonic()
        with self.lock:
            hit = self.entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        html = render()
        with self.lock:
            if len(self.entries) >= MEMO_PRUNE_AT:
                self.entries = {k: v for k, v in self.entries.items() if v[0] > now}
            self.entries[key] = (now + MEMO_SECONDS, html)
        return html


_memo = _Memo()
