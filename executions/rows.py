"""Hand-written row reads and writes for the checkpoint hot path.

The ORM spends about a millisecond compiling each query, several times the
cost of running it (PERF-ANCHORS.md §4.5). The statements here are built once
per model and column set, values go through each field's own
``get_db_prep_save`` and converters, and rows come back as ordinary model
instances, so the rest of the code still works with models.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any, Generic, TypeVar

from django.db import connection, models

M = TypeVar("M", bound=models.Model)


class RowIO(Generic[M]):
    def __init__(self, model: type[M]) -> None:
        self.model = model
        meta = model._meta
        self.table = connection.ops.quote_name(meta.db_table)
        self.fields = list(meta.concrete_fields)
        self.attnames = [field.attname for field in self.fields]
        self.insert_fields = [field for field in self.fields if not field.primary_key]
        self.by_attname = {field.attname: field for field in self.fields}
        self.pk_column = connection.ops.quote_name(meta.pk.column)
        self.column_list = ", ".join(connection.ops.quote_name(field.column) for field in self.fields)

    # --- reads ------------------------------------------------------------------
    def select(
        self,
        where: str,
        params: Sequence[Any],
        *,
        for_update: bool = False,
        order_by: str = "",
        limit: int | None = None,
    ) -> list[M]:
        sql = f"SELECT {self.column_list} FROM {self.table} WHERE {where}"
        if order_by:
            sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        if for_update and connection.features.has_select_for_update:
            sql += " FOR UPDATE"
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        converters = self._converters()
        db = connection.alias
        return [self.model.from_db(db, self.attnames, self._convert(row, converters)) for row in rows]

    def _converters(self) -> list[tuple[int, list[Any], Any]]:
        return _converters_for(self.model, connection.vendor)

    @staticmethod
    def _convert(row: Sequence[Any], converters: list[tuple[int, list[Any], Any]]) -> list[Any]:
        values = list(row)
        for index, functions, expression in converters:
            value = values[index]
            for function in functions:
                value = function(value, expression, connection)
            values[index] = value
        return values

    # --- writes -------------------------------------------------------------------
    def insert(self, objs: Iterable[M]) -> None:
        rows = [self._prep(obj, self.insert_fields) for obj in objs]
        if not rows:
            return
        columns = ", ".join(connection.ops.quote_name(field.column) for field in self.insert_fields)
        placeholder = "(" + ", ".join(["%s"] * len(self.insert_fields)) + ")"
        sql = f"INSERT INTO {self.table} ({columns}) VALUES " + ", ".join([placeholder] * len(rows))
        with connection.cursor() as cursor:
            cursor.execute(sql, [value for row in rows for value in row])

    def update(self, objs: Iterable[M], attnames: Sequence[str]) -> None:
        fields = [self.by_attname[name] for name in attnames]
        rows = [[*self._prep(obj, fields), obj.pk] for obj in objs]
        if not rows:
            return
        assignments = ", ".join(f"{connection.ops.quote_name(field.column)} = %s" for field in fields)
        sql = f"UPDATE {self.table} SET {assignments} WHERE {self.pk_column} = %s"
        with connection.cursor() as cursor:
            if len(rows) == 1:
                cursor.execute(sql, rows[0])
            else:
                cursor.executemany(sql, rows)

    @staticmethod
    def _prep(obj: M, fields: Sequence[models.Field]) -> list[Any]:
        return [field.get_db_prep_save(getattr(obj, field.attname), connection) for field in fields]


@cache
def _converters_for(model: type[models.Model], vendor: str) -> list[tuple[int, list[Any], Any]]:
    """Per column: the functions that turn a raw value into the Python value (as the ORM does)."""
    del vendor  # part of the cache key: converters differ between backends
    result = []
    for index, field in enumerate(model._meta.concrete_fields):
        expression = field.get_col(model._meta.db_table)
        functions = connection.ops.get_db_converters(expression) + expression.get_db_converters(connection)
        if functions:
            result.append((index, functions, expression))
    return result


_io: dict[type[models.Model], RowIO[Any]] = {}


def rows(model: type[M]) -> RowIO[M]:
    if model not in _io:
        _io[model] = RowIO(model)
    return _io[model]
