"""SQLite: conflicts skipped in SQL; claims serialized by taking the write lock first."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence

from ..models import QueueState
from .base import TaskRow, TaskStore, all_fresh
from .features import SQLiteFeatures
from .watch import watch_newest_id


class SQLiteOperations(TaskStore):
    features = SQLiteFeatures

    def listen(self, wake: Callable[[], None], stopping: Callable[[], bool]) -> None:
        watch_newest_id(self.alias, wake, stopping)

    def insert(self, rows: Sequence[TaskRow], notify: bool, random_names: bool = False) -> set[str]:
        # New tasks' rows (always, from an add) bind 13 parameters a row, not 17.
        fresh = all_fresh(rows)
        params = [p for row in self.prepared_rows(rows, fresh) for p in row]
        sql = self.insert_sql(len(rows), fresh)
        with self.connection.cursor() as cursor:
            if random_names:  # no name can be taken (`TaskStore.insert`)
                cursor.execute(sql, params)
                return {row.name for row in rows}
            cursor.execute(
                sql + " ON CONFLICT (queue_name, name) DO NOTHING RETURNING name", params
            )
            return {r[0] for r in cursor.fetchall()}

    def lock_for_claim(self) -> None:
        # SQLite has no row locks. A transaction that reads first and writes later can fail
        # with "database is locked" when two processes upgrade at once; an empty write at the
        # start takes the database's write lock (waiting on the busy timeout), so the claim
        # that follows is exclusive and never deadlocks.
        table = self.connection.ops.quote_name(QueueState._meta.db_table)
        with self.connection.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET paused = paused WHERE 0")

    def delete_by_names(
        self, queue_name: str, names: Sequence[str], now: datetime.datetime
    ) -> set[str]:
        marks = ", ".join(["%s"] * len(names))
        sql = (
            f"UPDATE {self.table} SET state = 'deleted', finished_at = %s "
            f"WHERE queue_name = %s AND name IN ({marks}) AND state IN ('queued', 'running') "
            "RETURNING name"
        )
        field = self.tasks().model._meta.get_field("finished_at")
        with self.connection.cursor() as cursor:
            cursor.execute(sql, [field.get_db_prep_save(now, self.connection), queue_name, *names])
            return {r[0] for r in cursor.fetchall()}

    def delete_by_ids(
        self, queue_name: str, ids: Sequence[int], now: datetime.datetime
    ) -> set[int]:
        marks = ", ".join(["%s"] * len(ids))
        sql = (
            f"UPDATE {self.table} SET state = 'deleted', finished_at = %s "
            f"WHERE id IN ({marks}) AND queue_name = %s AND state IN ('queued', 'running') "
            "RETURNING id"
        )
        field = self.tasks().model._meta.get_field("finished_at")
        with self.connection.cursor() as cursor:
            cursor.execute(sql, [field.get_db_prep_save(now, self.connection), *ids, queue_name])
            return {r[0] for r in cursor.fetchall()}
