"""Normalise an execution's outcome so two backends can be compared."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

OpKey = tuple[str, "str | None", "str | None", str, "str | None"]


def _sort_key(op: OpKey) -> tuple[str, ...]:
    return tuple("" if part is None else part for part in op)


def normalize_operations(ops: Iterable[Mapping[str, Any]]) -> list[OpKey]:
    """Sorted (Type, SubType, Name, Status, ParentId) tuples of wire-shape operations, EXECUTION excluded.

    Operation ids are deterministic (blake2b of counters), so ParentId compares verbatim.
    """
    keys: list[OpKey] = [
        (
            str(op["Type"]),
            op.get("SubType") or None,
            op.get("Name") or None,
            str(op["Status"]),
            op.get("ParentId") or None,
        )
        for op in ops
        if op.get("Type") != "EXECUTION"
    ]
    return sorted(keys, key=_sort_key)


@dataclass(frozen=True)
class Outcome:
    """What a backend produced for one case."""

    status: str  # SUCCEEDED | FAILED | TIMED_OUT | STOPPED
    result: str | None  # the execution's result string exactly as stored
    error_type: str | None  # ErrorType of the execution's error, if any
    operations: list[OpKey] = field(default_factory=list)
