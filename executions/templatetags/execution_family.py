"""The detail header's link from a child execution (a chained invoke's target) to its parent."""

from __future__ import annotations

from dataclasses import dataclass

from django import template
from django.db.models import OuterRef, Subquery

from executions.models import Execution, Operation

register = template.Library()


@dataclass(frozen=True)
class ParentLink:
    """Who started an execution: the parent execution, and the chained invoke that did."""

    pk: int
    name: str
    label: str
    function: str
    operation_id: str  # the CHAINED_INVOKE in the parent's timeline (its row is #op-<id>)
    operation_name: str


@register.simple_tag
def parent_execution(execution: Execution) -> ParentLink | None:
    """The parent of a child execution, in one query (no payloads); None for a top-level one.

    A tag rather than the view's context: the header is also rendered for live pushes.
    """
    if not execution.parent_id:
        return None
    invoke_name = Operation.objects.filter(
        execution_id=OuterRef("pk"), operation_id=execution.parent_operation_id
    ).values("name")[:1]
    parent = (
        Execution.objects.filter(pk=execution.parent_id)
        .select_related("function")
        .only("pk", "name", "label", "function__name")
        .annotate(invoke_name=Subquery(invoke_name))
        .first()
    )
    if parent is None:  # deleted meanwhile (the foreign key is SET_NULL, but not yet read)
        return None
    return ParentLink(
        pk=parent.pk,
        name=parent.name,
        label=parent.label,
        function=parent.function.name,
        operation_id=execution.parent_operation_id,
        operation_name=getattr(parent, "invoke_name", None) or "",
    )
