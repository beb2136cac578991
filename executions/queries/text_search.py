"""Case-insensitive substring search that PostgreSQL answers from pg_trgm indexes.

Django's ``icontains`` compiles to ``UPPER(column) LIKE UPPER(pattern)`` on
PostgreSQL, which no index on the column serves. ``ILike`` compiles to
``column ILIKE pattern`` instead, which a ``gin_trgm_ops`` index on the plain
column serves for any pattern, and to ``LIKE ... ESCAPE`` on SQLite (whose LIKE
ignores ASCII case already). The indexes exist only on PostgreSQL: in
embedded (SQLite) mode the same searches scan.
"""

from __future__ import annotations

from django.contrib.postgres.indexes import GinIndex
from django.db import models

# pg_trgm indexes three-character sequences; shorter search strings cannot use them.
TRIGRAM_MIN_LENGTH = 3


class PostgresTrigramIndex(GinIndex):
    """A pg_trgm GIN index (``gin_trgm_ops``) on PostgreSQL; nothing at all elsewhere.

    It serves ``LIKE``/``ILIKE`` with any pattern (``ILike`` below). SQLite
    (embedded mode) has no GIN and no trigrams; there those searches scan. The
    ``pg_trgm`` extension is created by the migration that adds these indexes.
    """

    def __init__(self, *, fields: list[str], name: str) -> None:
        super().__init__(fields=fields, name=name, opclasses=["gin_trgm_ops"] * len(fields))

    def deconstruct(self):  # type: ignore[no-untyped-def]
        path, args, kwargs = super().deconstruct()
        kwargs.pop("opclasses", None)
        return path, args, kwargs

    def create_sql(self, model, schema_editor, using="", **kwargs):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor != "postgresql":
            return ""
        return super().create_sql(model, schema_editor, using=using, **kwargs)

    def remove_sql(self, model, schema_editor, **kwargs):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor != "postgresql":
            return ""
        return super().remove_sql(model, schema_editor, **kwargs)


class ILike(models.Func):
    """``expression ILIKE pattern``, a boolean to filter on; SQLite's LIKE ignores ASCII case already.

    Unlike Django's ``icontains`` (``UPPER(x) LIKE UPPER(y)`` on PostgreSQL) it
    can use a trigram index on the plain column. ``pattern`` is a LIKE pattern:
    build it with ``like_pattern``.
    """

    arity = 2
    output_field = models.BooleanField()

    def __init__(self, expression: str, pattern: str) -> None:
        super().__init__(models.F(expression), models.Value(pattern))

    def as_sql(self, compiler, connection, **extra_context):  # type: ignore[no-untyped-def]
        operator = " ILIKE " if connection.vendor == "postgresql" else " LIKE "
        template = "%(expressions)s ESCAPE '\\'" if connection.vendor == "sqlite" else "%(expressions)s"
        return super().as_sql(compiler, connection, template=template, arg_joiner=operator, **extra_context)


def like_pattern(text: str, *, prefix: bool = False) -> str:
    """A LIKE pattern matching ``text`` anywhere (or only at the start), wildcards escaped."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%" if prefix else f"%{escaped}%"
