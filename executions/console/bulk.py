"""Bulk stop and redrive, the console's part: which executions a list filter targets.

The jobs themselves (creation, runners, resuming an interrupted one) are a service:
``executions.bulk_jobs``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from executions.bulk_jobs import ELIGIBLE
from executions.queries.console import execution_page


def eligible_filters(filters: Any, action: str) -> Any:
    """The list filter narrowed to the statuses ``action`` applies to."""
    eligible = ELIGIBLE[action]
    wanted = tuple(s for s in filters.statuses if s in eligible) if filters.statuses else eligible
    # A filter on only ineligible statuses matches nothing; keep it impossible, not widened.
    return dataclasses.replace(filters, statuses=wanted or ("__none__",))


def filter_target_ids(filters: Any, action: str, limit: int) -> list[int]:
    """Ids of up to ``limit`` executions the filter matches that ``action`` applies to."""

    narrowed = eligible_filters(filters, action)
    if narrowed.statuses == ("__none__",):
        return []
    ids: list[int] = []
    cursor: str | None = None
    while len(ids) < limit:
        page = execution_page(narrowed, cursor=cursor, limit=min(500, limit - len(ids)))
        ids += [row.pk for row in page.rows]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    return ids[:limit]
