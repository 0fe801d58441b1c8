"""An index over part of a table where the database can, and over all of it where it cannot."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q


class PartialIndex(models.Index):
    """An index of the rows that match `where`, on databases that index part of a table.

    PostgreSQL and SQLite build it with `where` as the index's WHERE clause, so a row enters it
    only while it can be selected through it: an INSERT or UPDATE of any other row writes one
    index entry less. MySQL and MariaDB cannot index part of a table; there it is an ordinary
    index of every row. (Django's own `Index(condition=...)` would be no index at all there, with
    the warning models.W037.) `where` is kept apart from `condition`, which stays None, so the
    model checks of every database see an ordinary index; it is part of the index's
    deconstruction, so migrations compare and rebuild it like any other option.

    A query uses the index only when the database can prove from its WHERE clause that every row
    it wants matches `where`. PostgreSQL proves much (`state = 'queued'` implies
    `state IN ('queued', 'running')`, and `x >= %s` implies `x IS NOT NULL`); SQLite little: a
    term of the query must be `where` itself, one of the terms of an OR in it, or, for
    `x IS NOT NULL`, a comparison of `x`.

    `full_fields`, if given, are the fields of the full index MySQL and MariaDB build instead
    of `fields`: an order that suits an index of every row (a column most rows leave NULL
    first, say, so that the rows `where` wants are one range), where the partial index's
    order suits the queries of the few rows it holds.
    """

    def __init__(
        self,
        *expressions: Any,
        where: Q,
        full_fields: list[str] | tuple[str, ...] | None = None,
        **kwargs: Any,
    ):
        if kwargs.get("condition") is not None:
            raise ValueError("PartialIndex takes its condition as `where`.")
        if not isinstance(where, Q):
            raise ValueError("PartialIndex.where must be a Q instance.")
        self.where = where
        #: The fields of the index where it is a full one (MySQL, MariaDB), if not `fields`.
        self.full_fields = list(full_fields) if full_fields else None
        super().__init__(*expressions, **kwargs)

    def deconstruct(self) -> Any:
        path, args, kwargs = super().deconstruct()
        kwargs["where"] = self.where
        if self.full_fields:
            kwargs["full_fields"] = self.full_fields
        return path, args, kwargs

    def create_sql(self, model: Any, schema_editor: Any, using: str = "", **kwargs: Any) -> Any:
        return self.as_built_on(schema_editor.connection).create_sql(
            model, schema_editor, using=using, **kwargs
        )

    def as_built_on(self, connection: Any) -> models.Index:
        """The plain index this one is on `connection`: with `where` as its condition, or not."""
        partial = connection.features.supports_partial_indexes
        fields = self.fields if partial or not self.full_fields else self.full_fields
        return models.Index(
            *self.expressions,
            fields=list(fields),
            name=self.name,
            db_tablespace=self.db_tablespace,
            opclasses=list(self.opclasses),
            condition=self.where if partial else None,
            include=list(self.include),
        )
