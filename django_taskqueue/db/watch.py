"""Wake idle workers on databases without NOTIFY: watch the newest task id.

Every add inserts a row with a larger primary key, so `SELECT MAX(id)` on the task table
changes exactly when an add commits (or a prune removes the newest row, which costs one
spurious claim round). The database answers it from the end of the primary-key index: one
index page on SQLite, "Select tables optimized away" on MariaDB/MySQL, no scan and no lock.
Asked every `WATCH_INTERVAL_SECONDS` (50 ms; MariaDB's store asks every 70 ms, see `db/mysql.py`)
on a connection of the watching thread's own, it wakes a worker within tens of milliseconds of
a commit on any machine, without a write on the add path and without a table of its own.

Unlike SQLite's `PRAGMA data_version`, which also moves on the worker's own claims and
successes (and so would wake it again after every round), the newest id moves only on adds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.db import connections

from ..models import TaskRecord

logger = logging.getLogger("django_taskqueue")

#: How often an idle worker asks for the newest task id. A worker wakes about half of this
#: after a commit, on average. 20 reads a second cost 0.3% of a core on SQLite (twice that at
#: 25 ms), so the whole idle worker stays under 1% (tests/dispatch/test_wake.py bounds it).
WATCH_INTERVAL_SECONDS = 0.05

#: The longest pause between two attempts to watch again after a database error.
_MAX_WATCH_BACKOFF_SECONDS = 30.0


def watch_newest_id(
    alias: str,
    wake: Callable[[], None],
    stopping: Callable[[], bool],
    interval: float = WATCH_INTERVAL_SECONDS,
) -> None:
    """Call `wake()` whenever the newest task id changes, until `stopping()` is true.

    Runs in a thread of its own: Django gives that thread its own connection to `alias`,
    closed on the way out. `wake()` is also called on each (re)connection, for the adds made
    while nobody watched.
    """
    connection = connections[alias]
    table = connection.ops.quote_name(TaskRecord._meta.db_table)
    sql = f"SELECT MAX(id) FROM {table}"
    unread = object()
    last: object = unread
    failures = 0
    cursor: Any = None
    try:
        while not stopping():
            try:
                if cursor is None:
                    # The driver's own cursor, kept open: Django's wrapper would double the
                    # cost of a read this small, 20 times a second.
                    connection.ensure_connection()
                    cursor = connection.connection.cursor()
                cursor.execute(sql)
                row = cursor.fetchone()
                newest = row[0] if row else None
                if newest != last or failures:
                    wake()  # the first read too, as a LISTEN does on connecting
                    last = newest
                failures = 0
                time.sleep(interval)
            except Exception:
                failures += 1
                logger.warning("event=watch_failed", exc_info=failures == 1)
                cursor = None
                try:
                    connection.close()
                except Exception:  # already broken; the next round opens a new one
                    pass
                time.sleep(min(_MAX_WATCH_BACKOFF_SECONDS, 0.5 * 2**failures))
    finally:
        connection.close()
