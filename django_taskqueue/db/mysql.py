"""MySQL and MariaDB: conflicts skipped with INSERT IGNORE; SKIP LOCKED claims."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .base import TaskRow, TaskStore, all_fresh
from .features import MySQLFeatures
from .watch import watch_newest_id

#: How often an idle worker reads the newest task id here. A read through PyMySQL costs
#: about three times one through SQLite's C module (some 300 µs of CPU, cold, every time), so
#: the watch reads a little less often than SQLite's: an idle worker stays under 1% of a core
#: and still wakes about 35 ms after a commit, on average.
WATCH_INTERVAL_SECONDS = 0.07


class MySQLOperations(TaskStore):
    features = MySQLFeatures

    def listen(self, wake: Callable[[], None], stopping: Callable[[], bool]) -> None:
        watch_newest_id(self.alias, wake, stopping, WATCH_INTERVAL_SECONDS)

    def insert(self, rows: Sequence[TaskRow], notify: bool, random_names: bool = False) -> set[str]:
        # Only unique-key conflicts can be ignored here: every other value was validated by
        # the Task constructor, so IGNORE cannot hide a truncation.
        connection: Any = self.connection  # MySQL's wrapper, with mysql_is_mariadb
        # New tasks' rows (always, from an add) bind 13 parameters a row, not 17.
        fresh = all_fresh(rows)
        if random_names:
            # No name can be taken (`TaskStore.insert`): a plain INSERT, nothing to read back.
            params = [p for row in self.prepared_rows(rows, fresh) for p in row]
            with self.connection.cursor() as cursor:
                cursor.execute(self.insert_sql(len(rows), fresh), params)
            return {row.name for row in rows}
        if connection.mysql_is_mariadb:
            # MariaDB returns exactly the rows that went in.
            params = [p for row in self.prepared_rows(rows, fresh) for p in row]
            sql = (
                "INSERT IGNORE"
                + self.insert_sql(len(rows), fresh)[len("INSERT") :]
                + " RETURNING name"
            )
            with self.connection.cursor() as cursor:
                cursor.execute(sql, params)
                return {r[0] for r in cursor.fetchall()}
        # MySQL has no RETURNING: rows go in one by one, each row count telling whether its
        # name was free. (MariaDB, the MySQL-family database the suite runs on, takes the
        # one-statement path above.)
        inserted: set[str] = set()
        sql_one = "INSERT IGNORE" + self.insert_sql(1, fresh)[len("INSERT") :]
        with self.connection.cursor() as cursor:
            for row, row_params in zip(rows, self.prepared_rows(rows, fresh), strict=True):
                cursor.execute(sql_one, row_params)
                if cursor.rowcount == 1:
                    inserted.add(row.name)
        return inserted
