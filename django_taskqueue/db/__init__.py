"""The task store: every write of a task row, one verb per transition, per database vendor.

`store(alias)` returns the `TaskStore` of the alias's vendor (`operations` is the same
function under the name the enqueue path uses). The portable store (`base.py`) is written
with the ORM; a vendor's store (`postgresql.py`, `mysql.py`, `sqlite.py`) replaces a verb with
its own SQL where one statement can do the work of several, and says what it can do in
`features.py`. Reads that change nothing (statistics, listings) stay with their modules.
"""

from __future__ import annotations

from functools import cache

from django.db import connections

from .base import Operations, TaskRow, TaskStore


@cache
def _store_class(vendor: str) -> type[TaskStore]:
    if vendor == "postgresql":
        from .postgresql import PostgreSQLOperations

        return PostgreSQLOperations
    if vendor == "mysql":
        from .mysql import MySQLOperations

        return MySQLOperations
    if vendor == "sqlite":
        from .sqlite import SQLiteOperations

        return SQLiteOperations
    return TaskStore


def store(alias: str) -> TaskStore:
    """Return the task store of the database `alias`."""
    connection = connections[alias]
    return _store_class(connection.vendor)(alias, connection)


operations = store

__all__ = ["Operations", "TaskRow", "TaskStore", "operations", "store"]
