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
    """

    def __init__(self, *expressions: Any, where: Q, **kwargs: Any):
        if kwargs.get("condition") is not None:
            raise ValueError("PartialIndex takes its condition as `where`.")
        if not isinstance(where, Q):
            raise ValueError("PartialIndex.where must be a Q instance.")
        self.where = where
        super().__init__(*expressions, **kwargs)

    def deconstruct(self) -> Any:
        path, args, kwargs = super().deconstruct()
        kwargs["where"] = self.where
        return path, args, kwargs

    def create_sql(self, model: Any, schema_editor: Any, using: str = "", **kwargs: Any) -> Any:
        return self.as_built_on(schema_editor.connection).create_sql(
            model, schema_editor, using=using, **kwargs
        )

    def as_built_on(self, connection: Any) -> models.Index:
        """The plain index this one is on `connection`: with `where` as its condition, or not."""
        partial = connection.features.supports_partial_indexes
        return models.Index(
            *self.expressions,
            fields=list(self.fields),
            name=self.name,
            db_tablespace=self.db_tablespace,
            opclasses=list(self.opclasses),
            condition=self.where if partial else None,
            include=list(self.include),
        )
