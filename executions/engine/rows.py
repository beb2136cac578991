"""Hand-written row reads and writes for the checkpoint hot path.

The ORM spends about a millisecond compiling each query, several times the
cost of running it (measured: see the README's Measured figures). The statements here are built once
per model and column set, values get the same conversions Django would make
for their field types, and rows come back as ordinary model instances, so the
rest of the code still works with models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import cache
from typing import Any, Generic, NamedTuple, TypeVar, cast

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.base import ModelState

M = TypeVar("M", bound=models.Model)
Preparer = Callable[[Any, "models.Field[Any, Any]", BaseDatabaseWrapper], Any]


def _column(field: models.Field[Any, Any]) -> str:
    # Concrete fields always have a column; the stubs allow None for abstract ones.
    return cast(str, field.column)


def _db() -> BaseDatabaseWrapper:
    return connections[DEFAULT_DB_ALIAS]


class RowIO(Generic[M]):
    def __init__(self, model: type[M]) -> None:
        db = _db()
        quote = db.ops.quote_name
        meta = model._meta
        self.model = model
        self.table = quote(meta.db_table)
        self.fields = list(meta.concrete_fields)
        self.attnames = [field.attname for field in self.fields]
        self.insert_fields = [field for field in self.fields if not field.primary_key]
        self.by_attname = {field.attname: field for field in self.fields}
        self.pk_column = quote(_column(meta.pk))
        self.column_list = ", ".join(quote(_column(field)) for field in self.fields)
        self.insert_columns = ", ".join(quote(_column(field)) for field in self.insert_fields)
        self.insert_row = "(" + ", ".join(["%s"] * len(self.insert_fields)) + ")"
        self.preparers = {field.attname: preparer_for(field, db.vendor) for field in self.fields}
        self.constant_defaults: dict[str, Any] = {}
        self.callable_defaults: list[tuple[str, Callable[[], Any]]] = []
        for field in self.fields:
            if field.has_default() and callable(field.default):
                self.callable_defaults.append((field.attname, field.default))
            else:
                self.constant_defaults[field.attname] = field.get_default()

    def build(self, values: dict[str, Any], *, db_alias: str | None = None) -> M:
        """A model instance without ``Model.__init__``, which cost more than the queries.

        Equivalent for these models: no field has side effects on assignment and
        no pre_init/post_init receivers are connected to them.
        """
        obj = self.model.__new__(self.model)
        state = ModelState()
        if db_alias is not None:
            state.adding = False
            state.db = db_alias
        obj._state = state
        fields = obj.__dict__
        fields.update(self.constant_defaults)
        for attname, default in self.callable_defaults:
            fields[attname] = default()
        fields.update(values)
        return obj

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
        query = self.query(where, params, for_update=for_update, order_by=order_by, limit=limit)
        return select_many([query])[0]

    def query(
        self,
        where: str,
        params: Sequence[Any],
        *,
        for_update: bool = False,
        order_by: str = "",
        limit: int | None = None,
    ) -> Query:
        sql = f"SELECT {self.column_list} FROM {self.table} WHERE {where}"
        if order_by:
            sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        if for_update and _db().features.has_select_for_update:
            sql += " FOR UPDATE"
        return Query(self, sql, list(params))

    def instances(self, fetched: Sequence[Sequence[Any]], db: BaseDatabaseWrapper) -> list[M]:
        converters = _converters_for(self.model, db.vendor)
        attnames = self.attnames
        return [
            self.build(dict(zip(attnames, _convert(row, converters, db), strict=True)), db_alias=db.alias)
            for row in fetched
        ]

    # --- writes -------------------------------------------------------------------
    def insert_statements(self, objs: Iterable[M]) -> list[Statement]:
        db = _db()
        values = [self._prep(obj, self.insert_fields, db) for obj in objs]
        if not values:
            return []
        sql = f"INSERT INTO {self.table} ({self.insert_columns}) VALUES " + ", ".join(
            [self.insert_row] * len(values)
        )
        return [(sql, [value for row in values for value in row])]

    def update_statements(self, objs: Iterable[M], attnames: Sequence[str]) -> list[Statement]:
        db = _db()
        fields, sql = self._update_sql(tuple(attnames))
        return [(sql, [*self._prep(obj, fields, db), obj.pk]) for obj in objs]

    @cache  # noqa: B019 - RowIO objects live as long as the process
    def _update_sql(self, attnames: tuple[str, ...]) -> tuple[list[models.Field[Any, Any]], str]:
        fields = [self.by_attname[name] for name in attnames]
        quote = _db().ops.quote_name
        assignments = ", ".join(f"{quote(_column(field))} = %s" for field in fields)
        return fields, f"UPDATE {self.table} SET {assignments} WHERE {self.pk_column} = %s"

    def insert_returning_pk(self, obj: M) -> M:
        """Insert one row and set its primary key from the database."""
        db = _db()
        ((sql, params),) = self.insert_statements([obj])
        with _cursor(db) as cursor:
            cursor.execute(f"{sql} RETURNING {self.pk_column}", params)
            obj.pk = cursor.fetchone()[0]
        obj._state.adding = False
        obj._state.db = db.alias
        return obj

    def prepared_values(self, obj: M, fields: Sequence[models.Field[Any, Any]] | None = None) -> list[Any]:
        """``obj``'s values ready for the database, for ``fields`` (default: the inserted ones)."""
        return self._prep(obj, self.insert_fields if fields is None else fields, _db())

    def _prep(self, obj: M, fields: Sequence[models.Field[Any, Any]], db: BaseDatabaseWrapper) -> list[Any]:
        prepared = []
        values = obj.__dict__
        for field in fields:
            attname = field.attname
            value = values[attname]
            preparer = self.preparers[attname]
            prepared.append(value if preparer is None or value is None else preparer(value, field, db))
        return prepared


Statement = tuple[str, list[Any]]


class Query(NamedTuple):
    io: RowIO[Any]
    sql: str
    params: list[Any]


def select_many(queries: Sequence[Query]) -> list[list[Any]]:
    """Run SELECTs in order; on PostgreSQL pipelined into one round trip."""
    db = _db()
    results: list[list[Any]] = []
    if db.vendor == "postgresql" and len(queries) > 1:
        with db.connection.pipeline():
            cursors = []
            for query in queries:
                cursor = _cursor(db)
                cursor.execute(query.sql, query.params)
                cursors.append(cursor)
        for query, cursor in zip(queries, cursors, strict=True):
            with cursor:
                results.append(query.io.instances(cursor.fetchall(), db))
        return results
    for query in queries:
        with _cursor(db) as cursor:
            cursor.execute(query.sql, query.params)
            results.append(query.io.instances(cursor.fetchall(), db))
    return results


def execute(statements: Sequence[Statement]) -> None:
    """Run write statements; on PostgreSQL pipelined into one round trip."""
    if not statements:
        return
    db = _db()
    if db.vendor == "postgresql" and len(statements) > 1:
        with db.connection.pipeline(), _cursor(db) as cursor:
            for sql, params in statements:
                cursor.execute(sql, params)
        return
    with _cursor(db) as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)


def execute_one(sql: str, params: Sequence[Any]) -> tuple[Any, ...]:
    """Run one statement and return its single row (a prepared statement once it repeats)."""
    with _cursor(_db()) as cursor:
        cursor.execute(sql, params)
        return tuple(cursor.fetchone())


def _cursor(db: BaseDatabaseWrapper) -> Any:
    """On PostgreSQL, psycopg's own cursor: server-side binding and prepared statements.

    Django's cursor binds parameters on the client and parses every query text
    for placeholders, which cost more CPU than the statement itself. The raw
    cursor shares Django's connection and transaction.
    """
    db.ensure_connection()
    if db.vendor == "postgresql":
        import psycopg

        return psycopg.Cursor(db.connection)
    return db.cursor()


def _json(value: Any, field: Any, db: BaseDatabaseWrapper) -> Any:
    return db.ops.adapt_json_value(value, field.encoder)


def _datetime(value: Any, field: Any, db: BaseDatabaseWrapper) -> Any:
    return db.ops.adapt_datetimefield_value(value)


def preparer_for(field: models.Field[Any, Any], vendor: str) -> Preparer | None:
    """The conversion ``get_db_prep_save`` makes for this field type, or None if values pass as-is.

    Only the types these tables use: JSON everywhere, datetimes where the driver
    does not take aware datetimes itself. The generic path cost more than the query.
    """
    if isinstance(field, models.JSONField):
        return _json
    if isinstance(field, models.DateTimeField):
        return None if vendor == "postgresql" else _datetime
    if isinstance(field, (models.DateField, models.TimeField, models.DecimalField)):
        return lambda value, field, db: field.get_db_prep_save(value, db)
    return None


@cache
def _converters_for(model: type[models.Model], vendor: str) -> list[tuple[int, list[Any], Any]]:
    """Per column: the functions that turn a raw value into the Python value (as the ORM does)."""
    db = _db()
    result = []
    for index, field in enumerate(model._meta.concrete_fields):
        expression = field.get_col(model._meta.db_table)
        functions = db.ops.get_db_converters(expression) + expression.get_db_converters(db)
        if functions:
            result.append((index, functions, expression))
    return result


def _convert(
    row: Sequence[Any], converters: list[tuple[int, list[Any], Any]], db: BaseDatabaseWrapper
) -> list[Any]:
    values = list(row)
    for index, functions, expression in converters:
        value = values[index]
        for function in functions:
            value = function(value, expression, db)
        values[index] = value
    return values


_io: dict[type[models.Model], RowIO[Any]] = {}


def rows(model: type[M]) -> RowIO[M]:
    if model not in _io:
        _io[model] = RowIO(model)
    return _io[model]
