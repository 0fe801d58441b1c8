"""Database errors in the worker: logged, the connection reset, the call tried again."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import DatabaseError, InterfaceError, connections

logger = logging.getLogger("django_taskqueue")

#: What the worker survives: the database went away or refused a statement.
DB_ERRORS = (DatabaseError, InterfaceError)
#: The longest pause between two tries: a database back from an outage is seen within it.
MAX_BACKOFF_SECONDS = 5.0

#: The errors a database raises when two statements collide (MariaDB's deadlock and lock wait
#: timeout, PostgreSQL's deadlock and serialization failure): the statement was undone, and the
#: same statement tried again succeeds.
_CONFLICT_ERRNOS = frozenset({1205, 1213})
_CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})

T = TypeVar("T")


def is_conflict(error: BaseException) -> bool:
    """Return whether `error` is a deadlock or serialization failure, safe to try again."""
    cause = error.__cause__ or error
    if getattr(cause, "sqlstate", None) in _CONFLICT_SQLSTATES:  # psycopg 3
        return True
    if getattr(cause, "pgcode", None) in _CONFLICT_SQLSTATES:  # psycopg2
        return True
    args: tuple[object, ...] = getattr(cause, "args", ())
    return bool(args) and args[0] in _CONFLICT_ERRNOS  # PyMySQL and mysqlclient


def retry_conflicts(function: Callable[[], T], attempts: int = 5) -> T:
    """Call `function` (one autocommit statement), again after a short random pause on a conflict.

    Two statements that collide on a unique index's locks lose nothing but the pause: the
    database undid the loser, so running it again is the whole remedy.
    """
    for attempt in range(1, attempts + 1):
        try:
            return function()
        except DatabaseError as error:
            if attempt == attempts or not is_conflict(error):
                raise
            logger.info("event=statement_conflict attempt=%s", attempt)
            time.sleep(random.uniform(0.005, 0.02) * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def backoff_seconds(failures: int) -> float:
    """Return the pause after `failures` failures in a row: 0.5 s, doubling, at most 5 s."""
    return min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** (failures - 1))


def reset_connection(alias: str) -> None:
    """Close the alias's connection in this thread; the next query opens a new one."""
    try:
        connections[alias].close()
    except Exception:  # the connection is already broken; a new one opens on next use
        logger.debug("event=close_failed", exc_info=True)


def with_db_retries(
    alias: str,
    worker_id: str,
    function: Callable[[], T],
    attempts: int | None = 6,
    on_error: Callable[[], None] | None = None,
) -> T:
    """Call `function`, reconnecting and retrying on database errors with a growing pause.

    `attempts=None` never gives up: the worker's own writes (outcomes, releases) wait for the
    database however long it is away, so no task is left to its lease by a worker that is
    alive. `on_error` is called on each failure.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return function()
        except DB_ERRORS:
            if on_error is not None:
                on_error()
            if attempts is not None and attempt >= attempts:
                raise
            pause = backoff_seconds(attempt)
            logger.exception("event=database_error worker=%s retry_in=%.1f", worker_id, pause)
            reset_connection(alias)
            time.sleep(pause)
