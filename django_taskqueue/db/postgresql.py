"""PostgreSQL: one statement per verb, conflicts skipped in SQL, workers woken by NOTIFY."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from .base import Operations, TaskRow

#: The LISTEN/NOTIFY channel that wakes idle workers; the payload is the queue name.
NOTIFY_CHANNEL = "django_taskqueue"


class PostgreSQLOperations(Operations):
    def insert(self, rows: Sequence[TaskRow], notify: bool) -> set[str]:
        # ON CONFLICT DO NOTHING keeps a duplicate name from aborting the caller's transaction;
        # RETURNING tells which names went in. The NOTIFY rides in the same statement, and
        # PostgreSQL delivers it only when the transaction commits: no worker wakes for a task
        # it cannot see yet, and a rollback wakes nobody.
        params = [p for row in self.prepared_rows(rows) for p in row]
        sql = (
            self.insert_sql(len(rows)) + " ON CONFLICT (queue_name, name) DO NOTHING RETURNING name"
        )
        if notify:
            sql = f"WITH ins AS ({sql}) SELECT name, (SELECT pg_notify(%s, %s)) FROM ins"
            params += [NOTIFY_CHANNEL, rows[0].queue_name]
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return {r[0] for r in cursor.fetchall()}

    def delete_by_names(
        self, queue_name: str, names: Sequence[str], now: datetime.datetime
    ) -> set[str]:
        sql = (
            f"UPDATE {self.table} SET state = 'deleted', finished_at = %s "
            "WHERE queue_name = %s AND name = ANY(%s) AND state IN ('queued', 'running') "
            "RETURNING name"
        )
        with self.connection.cursor() as cursor:
            cursor.execute(sql, [now, queue_name, list(names)])
            return {r[0] for r in cursor.fetchall()}
