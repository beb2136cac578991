"""Which timeline rows a page renders: expanded rows only, siblings a window at a time.

An execution with 3,000 operations rendered every row: ~1.2 MB of HTML and most of the
page's time. Now the page renders

- a context's children only while it is expanded: by default a context with at most
  ``FOLD_CHILDREN_OVER`` children, as long as the page stays within ``ROW_BUDGET`` rows;
  a folded context's rows are fetched (htmx) when the reader expands it;
- at most ``WINDOW`` siblings under one parent (the top level included), then a "more" row
  that fetches the next ``WINDOW``.

What the reader opened travels in the page as ``TimelineState`` (hidden inputs that the
live refresh and the row requests send back), so a live refresh renders the same rows.
The whole tree is still loaded (one query): the bars' scale, child counts and what a
folded context holds need it; only rendering is windowed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from django.http import QueryDict
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from executions.console.timeline import FOLD_CHILDREN_OVER, RowLinks, Timeline, TimelineRow, rows_html
from executions.queries.console import DetailData, OperationNode

WINDOW = 50  # siblings rendered at once under one parent
ROW_BUDGET = 100  # rows a page renders before contexts stay folded by default
MAX_STATE_TOKENS = 200  # opened contexts / windows a request may carry
TOP = "-"  # the top level's key in ``shown``


@dataclass(frozen=True)
class TimelineState:
    """What the reader opened: contexts expanded (``open``) and siblings shown per parent (``shown``)."""

    open: frozenset[str] = frozenset()
    shown: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_query(cls, params: QueryDict | Mapping[str, str]) -> TimelineState:
        """From ``open=ID ID ...`` and ``shown=PARENT:N ...``; bad tokens are left out."""
        opened = str(params.get("open") or "").split()[:MAX_STATE_TOKENS]
        shown: dict[str, int] = {}
        for token in str(params.get("shown") or "").split()[:MAX_STATE_TOKENS]:
            parent, _, count = token.rpartition(":")
            if parent and count.isdigit() and len(count) < 7:
                shown[parent] = max(WINDOW, int(count))
        return cls(frozenset(opened), shown)

    def opened(self, op_id: str) -> TimelineState:
        return dataclasses.replace(self, open=self.open | {op_id})

    def showing(self, parent: str, count: int) -> TimelineState:
        return dataclasses.replace(self, shown={**self.shown, parent: count})

    @property
    def open_value(self) -> str:
        return " ".join(sorted(self.open))

    @property
    def shown_value(self) -> str:
        return " ".join(f"{parent}:{count}" for parent, count in sorted(self.shown.items()))


@dataclass(frozen=True)
class MoreRow:
    """Siblings not rendered yet: ``remaining`` of them after the first ``skip``."""

    parent: str  # parent operation id, or TOP
    depth: int
    skip: int
    remaining: int
    failed: int  # of the remaining ones, those "failures only" shows (failed, holding a failure, ...)
    failures_only: bool = False  # a pager of the failures-only rows: ``skip`` counts failing siblings


Item = TimelineRow | MoreRow


class _Walk:
    """Depth-first over the tree, emitting the rows the state and the budget let through."""

    def __init__(self, timeline: Timeline, state: TimelineState) -> None:
        self.rows = {row.op.operation_id: row for row in timeline.rows}
        self.state = state
        self.out: list[Item] = []

    def siblings(self, nodes: list[OperationNode], parent: str, depth: int, skip: int, count: int) -> None:
        for node in nodes[skip : skip + count]:
            self.node(node)
        rest = nodes[skip + count :]
        if rest:
            failed = sum(1 for node in rest if self._failing(node))
            self.out.append(MoreRow(parent, depth, skip + count, len(rest), failed))

    def _failing(self, node: OperationNode) -> bool:
        row = self.rows.get(node.operation.operation_id)
        return row is not None and row.failing

    def node(self, node: OperationNode, *, expand: bool = False) -> None:
        op_id = node.operation.operation_id
        row = self.rows.get(op_id)
        if row is None:
            return
        children = node.children
        expanded = bool(children) and (expand or op_id in self.state.open or self._fits(children))
        self.out.append(dataclasses.replace(row, folded=bool(children) and not expanded))
        if expanded:
            count = self.state.shown.get(op_id, WINDOW)
            self.siblings(children, op_id, node.depth + 1, 0, count)

    def _fits(self, children: list[OperationNode]) -> bool:
        """Expanded by default: a small context, while the page stays within its budget."""
        shown = min(len(children), WINDOW)
        return len(children) <= FOLD_CHILDREN_OVER and len(self.out) + 1 + shown <= ROW_BUDGET


class _FailureWalk(_Walk):
    """Only the rows "failures only" shows, every failing context expanded, ``WINDOW`` at a time
    under each parent (a pager row says how many more failures it holds)."""

    def __init__(self, timeline: Timeline) -> None:
        super().__init__(timeline, TimelineState())

    def siblings(self, nodes: list[OperationNode], parent: str, depth: int, skip: int, count: int) -> None:
        failing = [node for node in nodes if self._failing(node)]
        for node in failing[skip : skip + count]:
            self.node(node)
        rest = len(failing) - skip - count
        if rest > 0:
            self.out.append(MoreRow(parent, depth, skip + count, rest, rest, failures_only=True))

    def node(self, node: OperationNode, *, expand: bool = False) -> None:
        row = self.rows.get(node.operation.operation_id)
        if row is None:
            return
        self.out.append(dataclasses.replace(row, folded=False))
        if node.children:
            self.siblings(node.children, node.operation.operation_id, node.depth + 1, 0, WINDOW)


def failure_items(data: DetailData, timeline: Timeline, parent: str = TOP, skip: int = 0) -> list[Item]:
    """Every row "failures only" shows, whether or not the page rendered it: the failing
    operations under ``parent`` after the first ``skip`` failing ones, with their failing
    descendants; from the top, the operations that failed before the redrive and are gone since."""
    walk = _FailureWalk(timeline)
    if parent == TOP:
        walk.siblings(data.operations, TOP, 0, skip, WINDOW)
        if skip == 0:
            walk.out += timeline.ghosts
    elif (node := data.nodes.get(parent)) is not None:
        walk.siblings(node.children, parent, node.depth + 1, skip, WINDOW)
    return walk.out


def page_items(data: DetailData, timeline: Timeline, state: TimelineState) -> list[Item]:
    """The rows the page (or its live refresh) renders, in tree order."""
    walk = _Walk(timeline, state)
    walk.siblings(data.operations, TOP, 0, 0, state.shown.get(TOP, WINDOW))
    return walk.out


def expanded_items(data: DetailData, timeline: Timeline, state: TimelineState, op_id: str) -> list[Item]:
    """``op_id``'s row expanded, and its children's rows (what its expand button fetches)."""
    node = data.nodes.get(op_id)
    if node is None:
        return []
    walk = _Walk(timeline, state)
    walk.node(node, expand=True)
    return walk.out


def more_items(
    data: DetailData, timeline: Timeline, state: TimelineState, parent: str, skip: int
) -> list[Item]:
    """The next ``WINDOW`` siblings under ``parent`` after the first ``skip`` (a "more" row's fetch)."""
    if parent == TOP:
        nodes, depth = data.operations, 0
    elif (node := data.nodes.get(parent)) is not None:
        nodes, depth = node.children, node.depth + 1
    else:
        return []
    walk = _Walk(timeline, state)
    walk.siblings(nodes, parent, depth, skip, WINDOW)
    return walk.out


# --- HTML --------------------------------------------------------------------------------------

MORE = (
    '<tr class="timeline-more" id="more-{key}-{skip}" data-depth="{depth}"{fail} data-testid="timeline-more">'
    '<td colspan="4"><div class="op-name" style="--depth:{depth}"><span class="toggle-spacer"></span>'
    '<button type="button" class="btn btn-sm" hx-get="{url}?parent={parent}&amp;skip={skip}" '
    'hx-include="#{state}" hx-target="closest tr" hx-swap="outerHTML">'
    'Show {next} more</button> <span class="muted small">{remaining} operation{plural} not shown</span>'
    "{failed}</div></td></tr>\n"
)
# The failures-only view's pager: the next failing siblings (no state: that view keeps none).
MORE_FAILURES = (
    '<tr class="timeline-more" id="more-failures-{key}-{skip}" data-depth="{depth}" data-fail '
    'data-testid="timeline-more"><td colspan="4"><div class="op-name" style="--depth:{depth}">'
    '<span class="toggle-spacer"></span><button type="button" class="btn btn-sm" '
    'hx-get="{url}?failures=1&amp;parent={parent}&amp;skip={skip}" hx-target="closest tr" '
    'hx-swap="outerHTML">'
    'Show {next} more</button> <span class="badge s-failed">{remaining} more failed</span></div></td></tr>\n'
)


@dataclass(frozen=True)
class RowsUrl:
    """Where a page's expand buttons and "more" rows fetch rows, and the id of its state inputs."""

    url: str
    state_id: str

    @classmethod
    def for_execution(cls, pk: int) -> RowsUrl:
        return cls(reverse("console:execution-timeline-rows", args=[pk]), f"timeline-{pk}-state")


def items_html(items: list[Item], links: RowLinks, rows_url: RowsUrl, timeline: Timeline) -> SafeString:
    """Rows (``rows_html``, a folded one with a fetching expand button) and "more" rows; all escaped."""
    out: list[str] = []
    run: list[TimelineRow] = []
    lazy = dataclasses.replace(links, children=f"{rows_url.url}?parent={{}}", state_id=rows_url.state_id)
    for item in items:
        if isinstance(item, MoreRow):
            if run:
                out.append(rows_html(dataclasses.replace(timeline, rows=run), lazy))
                run = []
            out.append(_more_html(item, rows_url))
        else:
            run.append(item)
    if run:
        out.append(rows_html(dataclasses.replace(timeline, rows=run), lazy))
    return mark_safe("".join(out))  # rows_html escapes; _more_html escapes what it interpolates


def _more_html(item: MoreRow, rows_url: RowsUrl) -> str:
    shown = min(WINDOW, item.remaining)
    if item.failures_only:
        return MORE_FAILURES.format(
            key=escape(item.parent),
            skip=item.skip,
            depth=item.depth,
            url=escape(rows_url.url),
            parent=escape(quote(item.parent, safe="")),
            next=shown,
            remaining=f"{item.remaining:,}",
        )
    failed = f' <span class="badge s-failed">{item.failed} failed</span>' if item.failed else ""
    return MORE.format(
        key=escape(item.parent),
        skip=item.skip,
        depth=item.depth,
        fail=" data-fail" if item.failed else "",
        url=escape(rows_url.url),
        parent=escape(quote(item.parent, safe="")),
        state=escape(rows_url.state_id),
        next=shown,
        remaining=f"{item.remaining:,}",
        plural="" if item.remaining == 1 else "s",
        failed=failed,
    )


def state_context(state: TimelineState, rows_url: RowsUrl) -> dict[str, Any]:
    """What the template's timeline-state partial needs."""
    return {"timeline_state": state, "timeline_state_id": rows_url.state_id}
