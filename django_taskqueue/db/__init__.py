"""The hot-path SQL of each database vendor, behind one interface.

`operations(alias)` returns the `Operations` of the alias's vendor. Everything that is not a
hot path (statistics, admin, sweeps) uses the ORM directly.
"""

from __future__ import annotations

from functools import cache

from django.db import connections

from .base import Operations, TaskRow


@cache
def _operations_class(vendor: str) -> type[Operations]:
    if vendor == "postgresql":
        from .postgresql import PostgreSQLOperations

        return PostgreSQLOperations
    if vendor == "mysql":
        from .mysql import MySQLOperations

        return MySQLOperations
    if vendor == "sqlite":
        from .sqlite import SQLiteOperations

        return SQLiteOperations
    return Operations


def operations(alias: str) -> Operations:
    """Return the operations object for the database `alias`."""
    return _operations_class(connections[alias].vendor)(alias)


__all__ = ["Operations", "TaskRow", "operations"]
