"""PostgreSQL: one statement per verb, conflicts skipped in SQL, workers woken by NOTIFY."""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, transaction
from django.db.backends.postgresql.psycopg_any import is_psycopg3

from .. import ratelimit
from ..models import QueueState, TaskRecord, TaskState
from .base import TaskStore
from .features import PostgreSQLFeatures
from .rows import ANY_TAG, FRESH_CONSTANTS, INSERT_COLUMNS, OneStatementClaim, TaskRow, all_fresh
from .sockets import wait_readable

#: psycopg 3's cursor that binds parameters on the server; None under psycopg2.
_ServerCursor: Any = None
#: What running a statement by name can fail with when the session did not keep it (or keeps
#: another of the same name, or its plan would now return other columns); psycopg 3's.
_PreparedStatementErrors: tuple[type[Exception], ...] = ()
#: psycopg 3's cursor that binds on the client, as Django's does; None under psycopg2.
_ClientCursor: Any = None
if is_psycopg3:
    from psycopg import ClientCursor as _ClientCursor
    from psycopg import Cursor as _ServerCursor
    from psycopg import errors as _psycopg_errors
    from psycopg.types.datetime import TimestamptzLoader

    _PreparedStatementErrors = (
        _psycopg_errors.InvalidSqlStatementName,
        _psycopg_errors.DuplicatePreparedStatement,
        _psycopg_errors.FeatureNotSupported,
    )

#: The LISTEN/NOTIFY channel that wakes idle workers; the payload is the queue name.
NOTIFY_CHANNEL = "django_taskqueue"

logger = logging.getLogger("django_taskqueue")

#: invalid_sql_statement_name: the session has no such prepared statement.
_NO_SUCH_STATEMENT = "26000"
#: duplicate_prepared_statement: the session has it already.
_ALREADY_PREPARED = "42P05"
#: feature_not_supported, as raised when a cached plan would now return other columns.
_PLAN_CHANGED = "0A000"


class PostgreSQLOperations(TaskStore):
    features = PostgreSQLFeatures

    def insert(self, rows: Sequence[TaskRow], notify: bool, random_names: bool = False) -> set[str]:
        # ON CONFLICT DO NOTHING keeps a duplicate name from aborting the caller's transaction;
        # RETURNING tells which names went in. Names drawn at random cannot be taken, and their
        # statement leaves the ON CONFLICT out (`TaskStore.insert`). The NOTIFY rides in the
        # same statement, and PostgreSQL delivers it only when the transaction commits: no
        # worker wakes for a task it cannot see yet, and a rollback wakes nobody.
        first = rows[0]
        one = len(rows) == 1
        if not all_fresh(rows) or (
            not one
            and any(
                row.queue_name != first.queue_name or row.enqueued_at is not first.enqueued_at
                for row in rows
            )
        ):
            return self._insert_rows(rows, notify)
        # Rows of one add: the values every row shares are written once, as one parameter or
        # a constant of the statement, and the others go as they are (`_fresh_values`).
        connection = self.connection
        params: list[Any] = [first.queue_name, first.enqueued_at]
        if one:
            # The common case, one task: 13 parameters, bound by the server (`_run`).
            params += _fresh_values(first, connection)
            sql = _insert_one_sql(connection, notify, random_names)
            client_sql = None
        else:
            # A batch: one short statement whatever the number of rows, each column an array
            # that unnest() turns back into rows. Its text is the same for every batch, so
            # psycopg converts it once, and it binds 13 parameters instead of 17 per row.
            columns: list[list[Any]] = [[] for _ in _FRESH_COLUMNS]
            appends = [column.append for column in columns]
            for row in rows:
                for append, value in zip(appends, _fresh_values(row, connection), strict=True):
                    append(value)
            params += columns
            sql = _insert_batch_sql(connection, notify, random_names, binary=True)
            # Django's cursor binds on the client, which has no binary parameters.
            client_sql = _insert_batch_sql(connection, notify, random_names)
        if notify:
            params += [NOTIFY_CHANNEL, first.queue_name]
        return {r[0] for r in _run(connection, sql, params, client_sql)}

    def _insert_rows(self, rows: Sequence[TaskRow], notify: bool) -> set[str]:
        """Insert rows with every column a parameter of its own (rows of more than one add)."""
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

    def claim_in_one_statement(
        self,
        queue_name: str,
        *,
        now: datetime.datetime,
        worker_id: str,
        max_tasks: int,
        lease_until: datetime.datetime,
        bucket: tuple[float, int] | None,
        columns: Sequence[str],
    ) -> OneStatementClaim:
        values: dict[str, Any] = {
            "queue": queue_name,
            "now": now,
            "max": max_tasks,
            "worker": worker_id,
            "lease_until": lease_until,
        }
        if bucket is not None:
            values.update(rate=float(bucket[0]), size=float(bucket[1]))
            values["tc"] = float(ratelimit.RATE_TIME_CONSTANT_SECONDS)
        sql = _claim_sql(self.connection, tuple(columns), bucket is not None, self._commits_alone())
        fetched = self._execute_prepared(sql, values, c_timestamps=True)
        if not fetched:
            return OneStatementClaim(found=False)
        paused, wanted, level = fetched[0][:3]
        connection = self.connection
        timezone = connection.timezone
        json_fields = _json_fields(tuple(columns))
        time_columns = _time_columns(tuple(columns))
        # The tasks of a queue nearly all have the same headers, and no errors yet: each
        # distinct JSON text is decoded once per claim, and its tasks share the value, as the
        # lease's do (a claimed task only reads them; `ClaimedTask.from_row` copies the errors
        # list, which a failure extends into a new one).
        decoded: dict[tuple[str, Any], Any] = {}
        rows = []
        for r in fetched:
            if r[3] is None:  # the LEFT JOIN's row when nothing was claimed
                continue
            row = dict(zip(columns, r[3:], strict=True))
            for column, field in json_fields:
                text = row[column]
                if text is None:
                    continue
                key = (column, text)
                value = decoded.get(key, _MISSING)
                if value is _MISSING:
                    value = decoded[key] = field.from_db_value(text, None, connection)
                row[column] = value
            for column in time_columns:
                at = row[column]
                if at is not None and at.tzinfo is not timezone:
                    row[column] = at.replace(tzinfo=timezone)
            rows.append(row)
        # RETURNING follows no order: restore the claim's (priority, then oldest eta).
        rows.sort(key=lambda row: (-row["priority"], row["eta"], row["id"]))
        if level is not None:
            level -= len(rows)
        return OneStatementClaim(
            found=True,
            paused=paused,
            wanted=wanted,
            tokens=level,
            rate=float(bucket[0]) if bucket is not None else None,
            rows=rows,
        )

    def _execute_prepared(
        self, statement: PreparedSQL, values: dict[str, Any], c_timestamps: bool = False
    ) -> list[tuple]:
        """Run `statement`, prepared once per database session; return its rows.

        PREPARE once, then EXECUTE by name: the statement is parsed and planned once per
        session, not on every call. Only in autocommit, where a failed EXECUTE can be retried:
        a session that lost its statement (a pooler's DISCARD ALL) prepares it again, and a
        connection whose sessions do not keep it (a pooler in transaction mode, where PREPARE
        and EXECUTE may reach two server connections) runs the statement unprepared from then
        on. Inside a transaction, the statement is always run unprepared.
        """
        connection = self.connection
        if connection.in_atomic_block:
            return self._execute_unprepared(statement, values, c_timestamps)
        connection.ensure_connection()
        with _SESSIONS_LOCK:  # worker threads each have a connection, and share the map
            session = _SESSIONS.get(connection.connection)
            if session is None:
                session = _SESSIONS[connection.connection] = _Session()
        if not session.prepares:
            return self._execute_unprepared(statement, values, c_timestamps)
        args = [values[name] for name in statement.params]
        for attempt in range(2):
            just_prepared = statement.name not in session.names
            with _quiet_cursor(connection) as cursor:
                if c_timestamps:
                    _load_timestamps_in_c(cursor)
                try:
                    if just_prepared:
                        cursor.execute(statement.prepare)
                        session.names.add(statement.name)
                    cursor.execute(statement.execute, args)
                    return cursor.fetchall()
                except DatabaseError as error:
                    sqlstate = _sqlstate(error.__cause__)
                    if attempt == 0 and sqlstate == _PLAN_CHANGED:
                        cursor.execute(f"DEALLOCATE {statement.name}")
                        session.names.discard(statement.name)
                    elif attempt == 0 and sqlstate == _ALREADY_PREPARED:
                        session.names.add(statement.name)
                    elif attempt == 0 and sqlstate == _NO_SUCH_STATEMENT and not just_prepared:
                        session.names.discard(statement.name)
                    elif sqlstate in (_NO_SUCH_STATEMENT, _ALREADY_PREPARED):
                        # Missing after a PREPARE, or there after an EXECUTE found it missing:
                        # consecutive statements reach different server connections.
                        session.prepares = False
                        logger.warning(
                            "event=prepared_statements_off reason=%s",
                            "the database session does not keep prepared statements",
                        )
                        return self._execute_unprepared(statement, values, c_timestamps)
                    else:
                        raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _execute_unprepared(
        self, statement: PreparedSQL, values: dict[str, Any], c_timestamps: bool = False
    ) -> list[tuple]:
        with self.connection.cursor() as cursor:
            if c_timestamps:
                _load_timestamps_in_c(cursor)
            cursor.execute(statement.plain, values)
            return cursor.fetchall()

    def mark_succeeded(
        self,
        ids: Sequence[int],
        worker_id: str,
        leased_at: datetime.datetime | None,
        status_code: int | None,
        now: datetime.datetime,
    ) -> set[int]:
        # One prepared statement that says which rows it wrote (RETURNING), instead of an
        # UPDATE and, when some task was taken meanwhile, a SELECT.
        values = {
            "ids": list(ids),
            "worker": worker_id,
            "leased_at": leased_at,
            "code": status_code,
            "now": now,
        }
        statement = _succeeded_sql(self.connection, self._commits_alone())
        return {r[0] for r in self._execute_prepared(statement, values)}

    def _commits_alone(self) -> bool:
        """Whether a statement run now is its own transaction (autocommit, no atomic block)."""
        return not self.connection.in_atomic_block

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

    def delete_by_ids(
        self, queue_name: str, ids: Sequence[int], now: datetime.datetime
    ) -> set[int]:
        # By primary key: the rows of a lease (`Queue._delete_now`).
        sql = (
            f"UPDATE {self.table} SET state = 'deleted', finished_at = %s "
            "WHERE id = ANY(%s::bigint[]) AND queue_name = %s "
            "AND state IN ('queued', 'running') RETURNING id"
        )
        with self.connection.cursor() as cursor:
            cursor.execute(sql, [now, _bigint_array(ids), queue_name])
            return {r[0] for r in cursor.fetchall()}

    def lease(
        self,
        queue_name: str,
        now: datetime.datetime,
        lease_until: datetime.datetime,
        max_tasks: int,
        may_lease: Callable[[dict[str, Any]], bool],
        tag: Any = ANY_TAG,
        group_by_tag: bool = False,
    ) -> list[dict[str, Any]]:
        if group_by_tag or tag is not ANY_TAG:
            return super().lease(
                queue_name, now, lease_until, max_tasks, may_lease, tag, group_by_tag
            )
        # One statement instead of a SELECT and an UPDATE of 1,000 ids: the CTE picks and
        # locks the due tasks (SKIP LOCKED: rows another lease holds are passed over, never
        # waited for; a paused queue matches nothing), the UPDATE leases them, and RETURNING
        # gives each row after the lease beside the values it had before (from `due`), in
        # the lease's order (priority, then oldest eta), which RETURNING alone does not keep.
        # The state is a literal, as in every statement that reads the due index: it is what
        # proves a plan (a generic one of a prepared statement too) may use that partial index.
        quote = self.connection.ops.quote_name
        sql = (
            f"WITH due AS (SELECT id, priority, eta, leased_at, first_attempt_at FROM {self.table} "
            f"WHERE queue_name = %s AND state = '{TaskState.QUEUED}' AND eta <= %s "
            f"AND NOT EXISTS (SELECT 1 FROM {quote(QueueState._meta.db_table)} "
            "WHERE name = %s AND paused) "
            "ORDER BY priority DESC, eta LIMIT %s FOR UPDATE SKIP LOCKED), "
            f"leased AS (UPDATE {self.table} AS t SET eta = %s, "
            "retry_count = t.retry_count + 1, "
            "leased_at = %s, first_attempt_at = COALESCE(t.first_attempt_at, %s) "
            # The ids as an array too, as in the claim (`_claim_sql`): without it the planner
            # may hash-join `due` with a sequential scan of the whole table, history included.
            "FROM due WHERE t.id = due.id AND t.id = ANY(ARRAY(SELECT id FROM due)) "
            "RETURNING t.id, t.name, t.payload, t.tag, t.retry_count, t.retry_options, "
            "t.enqueued_at, t.headers, due.priority, due.eta AS due_eta, "
            "due.leased_at AS due_leased_at, due.first_attempt_at AS due_first_attempt_at) "
            "SELECT * FROM leased ORDER BY priority DESC, due_eta, id"
        )
        params: list[Any] = [queue_name, now, queue_name, max_tasks]
        params += [lease_until, now, now]
        options_field: Any = TaskRecord._meta.get_field("retry_options")
        headers_field: Any = TaskRecord._meta.get_field("headers")
        connection = self.connection
        timezone = connection.timezone
        with transaction.atomic(using=self.alias):
            with connection.cursor() as cursor:
                _load_timestamps_in_c(cursor)
                cursor.execute(sql, params)
                fetched = cursor.fetchall()
            leased: list[dict[str, Any]] = []
            exhausted: list[tuple[Any, ...]] = []
            # The tasks of a queue nearly all have the same headers: each distinct JSON text
            # is decoded once per lease, and its tasks share the pairs (a Task only reads them).
            header_pairs: dict[Any, Any] = {}
            for r in fetched:
                headers = header_pairs.get(r[7])
                if headers is None:
                    headers = header_pairs[r[7]] = headers_field.from_db_value(
                        r[7], None, connection
                    )
                row = {
                    "id": r[0],
                    "name": r[1],
                    "payload": r[2],
                    "tag": r[3],
                    "eta": r[9],
                    "retry_count": r[4] - 1,
                    "retry_options": None
                    if r[5] is None
                    else options_field.from_db_value(r[5], None, connection),
                    "enqueued_at": enqueued_at
                    if (enqueued_at := r[6]).tzinfo is timezone
                    else enqueued_at.replace(tzinfo=timezone),
                    "headers": headers,
                }
                if may_lease(row):
                    row["eta"] = lease_until
                    row["retry_count"] += 1
                    leased.append(row)
                else:
                    exhausted.append(r)
            if exhausted:
                self._fail_exhausted(exhausted, now)
        return leased

    def _fail_exhausted(self, exhausted: list[tuple[Any, ...]], now: datetime.datetime) -> None:
        """Mark FAILED the tasks over their lease limit, with the lease just taken undone.

        `exhausted` holds the lease's RETURNING rows; each ends as if it had been looked at
        and not leased: its eta, leased_at and first_attempt_at as they were (from `due`).
        """
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {self.table} AS t SET state = %s, finished_at = %s, "
                "last_retry_reason = %s, eta = o.eta, retry_count = t.retry_count - 1, "
                "leased_at = o.leased_at, first_attempt_at = o.first_attempt_at "
                "FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[], "
                "%s::timestamptz[]) AS o(id, eta, leased_at, first_attempt_at) "
                "WHERE t.id = o.id",
                [
                    TaskState.FAILED,
                    now,
                    "lease limit reached",
                    [r[0] for r in exhausted],
                    [r[9] for r in exhausted],
                    [r[10] for r in exhausted],
                    [r[11] for r in exhausted],
                ],
            )

    def listen(self, wake: Callable[[], None], stopping: Callable[[], bool]) -> None:
        """Call `wake()` on each NOTIFY of a committed add, until `stopping()` is true.

        Runs in a thread of its own, on a `NotifyChannel`. The worker does not use it: its loop
        waits on the channel's socket itself (`dispatch/listener.Listener`).
        """
        channel = self.notify_channel()
        try:
            while not stopping():
                if channel.wait(0.5):
                    wake()
        finally:
            channel.close()

    def notify_channel(self) -> NotifyChannel:
        """A LISTEN connection of its own, for a caller that waits on its socket."""
        return NotifyChannel(self.connection)


def _sqlstate(error: BaseException | None) -> str | None:
    """The SQLSTATE of a driver's error: psycopg 3's `sqlstate`, psycopg2's `pgcode`."""
    return getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)


class NotifyChannel:
    """A connection that LISTENs for the NOTIFY of committed adds, waited on by its socket.

    LISTEN needs a connection of its own, outside Django's (which belong to threads and run
    queries). `wait()` waits on its socket in the caller's thread, together with another
    socket of the caller's if it has one (the worker's loop: see `dispatch/listener.py`), so
    no thread stands between a NOTIFY and the caller. The connection is made on the first
    wait, and made again with a growing pause when it breaks; a wait on a new connection
    returns at once, for the adds made while nobody listened.
    """

    def __init__(self, connection: Any) -> None:
        self._wrapper = connection
        self._conn: Any = None
        self._fresh = False
        self._failures = 0
        self._retry_at = 0.0

    def wait(self, timeout: float, also: int | None = None) -> bool:
        """Wait up to `timeout` seconds for a NOTIFY, or for the socket `also` to be readable.

        Return whether either came (or the connection is new). A NOTIFY is consumed here;
        `also`'s data is left to its owner.
        """
        fd = self.fileno()
        if self.take_fresh():
            return True
        fds = [f for f in (fd, also) if f is not None]
        if not fds:
            time.sleep(max(0.0, timeout))
            return False
        ready = wait_readable(fds, timeout)
        if fd is not None and fd in ready and self.read():
            return True
        return also is not None and also in ready

    def fileno(self) -> int | None:
        """The socket to wait on, connecting first if need be; None until a retry is due."""
        if self._conn is None:
            if time.monotonic() < self._retry_at:
                return None
            try:
                conn = self._wrapper.get_new_connection(self._wrapper.get_connection_params())
                conn.autocommit = True
                with conn.cursor() as cursor:  # psycopg 3 and psycopg2 alike
                    cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")
            except Exception:
                self._failed()
                return None
            self._conn, self._fresh, self._failures = conn, True, 0
        return self._conn.fileno()

    def take_fresh(self) -> bool:
        """Whether a connection was made since the last call (wake for the adds before it)."""
        fresh, self._fresh = self._fresh, False
        return fresh

    def read(self) -> bool:
        """Take what the socket has received; return whether it held a NOTIFY.

        Call it when the socket is readable: it does not wait. A broken connection is closed
        (and made again by a later `fileno()`).
        """
        if self._conn is None:
            return False
        try:
            if is_psycopg3:
                return sum(1 for _ in self._conn.notifies(timeout=0)) > 0
            # psycopg2: poll() reads what the socket holds into the `notifies` list.
            self._conn.poll()
            heard = bool(self._conn.notifies)
            self._conn.notifies.clear()
            return heard
        except Exception:
            self._failed()
            return False

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken
                pass

    def _failed(self) -> None:
        self._failures += 1
        logger.warning("event=listen_failed", exc_info=self._failures == 1)
        self.close()
        backoff = min(_MAX_LISTEN_BACKOFF_SECONDS, 0.5 * 2**self._failures)
        self._retry_at = time.monotonic() + backoff


def _load_timestamps_in_c(cursor: Any) -> None:
    """Have `cursor` load timestamptz columns with psycopg's own loader, written in C.

    Django's loader is a Python subclass of it (it sets the connection's tzinfo on each value),
    which costs several µs per value: a lease of 1,000 tasks reads 2,000 timestamps. The values
    are the same instants; a caller that hands one out sets `connection.timezone` on it, as
    Django's loader does. Under psycopg2 the cursor is left as it is.
    """
    if is_psycopg3:
        cursor.cursor.adapters.register_loader("timestamptz", TimestamptzLoader)


def _bigint_array(ids: Sequence[int]) -> str:
    """`ids` as the text of a PostgreSQL bigint[] (cast in SQL): psycopg's list adaptation
    of a client-side bound parameter costs µs per element, joining ints as text does not."""
    return "{" + ",".join(map(str, map(int, ids))) + "}"


#: The longest pause between two attempts to LISTEN again.
_MAX_LISTEN_BACKOFF_SECONDS = 30.0


_MISSING = object()


@functools.cache
def _time_columns(columns: tuple[str, ...]) -> list[str]:
    """The timestamptz columns among `columns`, which a cursor loads in C without Django's
    connection timezone (`_load_timestamps_in_c`)."""
    fields = [(c, TaskRecord._meta.get_field(c)) for c in columns]
    return [c for c, f in fields if f.get_internal_type() == "DateTimeField"]


@functools.cache
def _json_fields(columns: tuple[str, ...]) -> list[tuple[str, Any]]:
    """(column, field) for the JSON columns among `columns`: raw cursors give their text."""
    fields = [(column, TaskRecord._meta.get_field(column)) for column in columns]
    return [(column, f) for column, f in fields if f.get_internal_type() == "JSONField"]


@dataclass(frozen=True)
class PreparedSQL:
    """A statement to PREPARE once per session and EXECUTE by name."""

    name: str
    #: Its parameters' names, in the order of $1, $2, ...
    params: tuple[str, ...]
    prepare: str
    execute: str
    #: The statement itself, with %(name)s placeholders, to run unprepared.
    plain: str


class _Session:
    """What one database session (one psycopg connection) has prepared."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        #: False once the session was seen not to keep its prepared statements.
        self.prepares = True
        #: False once an add run by name failed on this session (`_run`): its adds are run
        #: unprepared from then on, whatever the claims do.
        self.prepares_adds = True


#: The state of each open connection, forgotten with it.
_SESSIONS: weakref.WeakKeyDictionary[Any, _Session] = weakref.WeakKeyDictionary()
_SESSIONS_LOCK = threading.Lock()


def prepared_sql(body: str, params: Sequence[tuple[str, str]]) -> PreparedSQL:
    """Build a `PreparedSQL` from `body`, whose %(name)s placeholders are `params` (name, type).

    The name is a digest of the text, so a changed statement is never run under an old name.
    """
    names = tuple(name for name, _ in params)
    text = body % {name: f"${i}" for i, name in enumerate(names, 1)}
    name = "taskqueue_" + hashlib.sha256(text.encode()).hexdigest()[:16]
    types = ", ".join(sql_type for _, sql_type in params)
    return PreparedSQL(
        name=name,
        params=names,
        prepare=f"PREPARE {name} ({types}) AS {text}",
        execute=f"EXECUTE {name} ({', '.join(['%s'] * len(names))})",
        plain=body,
    )


#: The columns of a fresh row (`_fresh_values`) that differ from row to row, in this order, and
#: each one's parameter type; the other insert columns take `_FRESH_SHARED` or a constant.
_FRESH_COLUMNS = (
    ("name", "text"),
    ("method", "text"),
    ("url", "text"),
    ("headers", "text"),
    ("payload", "bytea"),
    ("tag", "text"),
    ("target", "text"),
    ("priority", "smallint"),
    ("eta", "timestamptz"),
    ("retry_options", "text"),
    ("dispatch_deadline_usec", "bigint"),
)
_FRESH_NAMES = tuple(name for name, _ in _FRESH_COLUMNS)
#: One value for every row of an add.
_FRESH_SHARED = (("queue_name", "text"), ("enqueued_at", "timestamptz"))
#: What a fresh row holds in the columns not passed at all.
_FRESH_CONSTANTS = {**FRESH_CONSTANTS, "errors": f"{FRESH_CONSTANTS['errors']}::jsonb"}
#: JSON columns, passed as their JSON text and cast in SQL.
_FRESH_JSON = frozenset({"headers", "retry_options"})


def _fresh_values(row: TaskRow, connection: Any) -> tuple[Any, ...]:
    """The `_FRESH_COLUMNS` of `row` as parameters: what each field's adaptation would give.

    Text, bytes and integers pass as they are; JSON as its text (the fields have no encoder of
    their own, so `json.dumps`; None stays SQL NULL, as `JSONField.get_db_prep_save` keeps it);
    an aware datetime as it is, and a naive one through its field (which makes it aware).
    """
    eta = row.eta
    if eta.tzinfo is None:
        eta = _ETA_FIELD.get_db_prep_save(eta, connection)
    options = row.retry_options
    return (
        row.name,
        row.method,
        row.url,
        json.dumps(row.headers),
        row.payload,
        row.tag,
        row.target,
        row.priority,
        eta,
        None if options is None else json.dumps(options),
        row.dispatch_deadline_usec,
    )


_ETA_FIELD: Any = TaskRecord._meta.get_field("eta")


def _fresh_insert(connection: Any, values: Sequence[str]) -> str:
    """The INSERT of fresh rows, up to its SELECT list or VALUES: `values` are `_FRESH_SHARED`'s
    then `_FRESH_COLUMNS`' expressions, and the constants of a fresh row follow."""
    quote = connection.ops.quote_name
    columns = [name for name, _ in _FRESH_SHARED + _FRESH_COLUMNS] + list(_FRESH_CONSTANTS)
    assert sorted(columns) == sorted(INSERT_COLUMNS)
    return (
        f"INSERT INTO {quote(TaskRecord._meta.db_table)} "
        f"({', '.join(quote(c) for c in columns)}) "
        f"SELECT {', '.join([*values, *_FRESH_CONSTANTS.values()])}"
    )


def _insert_one_sql(connection: Any, notify: bool, random_names: bool = False) -> str:
    """The insert of one fresh task: `_FRESH_SHARED`'s and `_FRESH_COLUMNS`' values, in order,
    then, when `notify`, the channel and the queue name of the NOTIFY in the same statement."""
    key = (1, notify, random_names)
    sql = _FRESH_SQL.get(key)
    if sql is None:
        values = [
            f"%s::{'jsonb' if name in _FRESH_JSON else sql_type}"
            for name, sql_type in _FRESH_SHARED + _FRESH_COLUMNS
        ]
        insert = _fresh_insert(connection, values)
        sql = _FRESH_SQL[key] = _notifying(insert, notify, random_names)
    return sql


def _insert_batch_sql(
    connection: Any, notify: bool, random_names: bool = False, binary: bool = False
) -> str:
    """The insert of a batch of fresh tasks: queue name, enqueue time, one array per column of
    `_FRESH_COLUMNS`, then what `_insert_one_sql` takes for the NOTIFY.

    `binary`: the arrays are sent in PostgreSQL's binary format (`%b`, server-side binding
    only). In the text format psycopg quotes and escapes every element of every array (two
    regular expressions per text element), which was half of a 100-task add's client time;
    the binary format writes each element's length and bytes.
    """
    key = (2 if binary else 0, notify, random_names)
    sql = _FRESH_SQL.get(key)
    if sql is None:
        shared = [f"%s::{sql_type}" for _, sql_type in _FRESH_SHARED]
        values = [
            f"u.{name}::jsonb" if name in _FRESH_JSON else f"u.{name}" for name in _FRESH_NAMES
        ]
        mark = "%b" if binary else "%s"
        arrays = ", ".join(f"{mark}::{sql_type}[]" for _, sql_type in _FRESH_COLUMNS)
        sql = (
            _fresh_insert(connection, shared + values)
            + f" FROM unnest({arrays}) AS u({', '.join(_FRESH_NAMES)})"
        )
        sql = _FRESH_SQL[key] = _notifying(sql, notify, random_names)
    return sql


def _notifying(insert: str, notify: bool, random_names: bool) -> str:
    """`insert`, skipping names already taken (unless `random_names`: none can be) and
    returning those it wrote; with the NOTIFY."""
    sql = insert + ("" if random_names else " ON CONFLICT (queue_name, name) DO NOTHING")
    sql += " RETURNING name"
    if notify:
        sql = f"WITH ins AS ({sql}) SELECT name, (SELECT pg_notify(%s::text, %s::text)) FROM ins"
    return sql


#: The inserts of fresh rows built so far, by (one row, a batch or a binary batch, notify,
#: random names).
_FRESH_SQL: dict[tuple[int, bool, bool], str] = {}


def _run(
    connection: Any, sql: str, params: Sequence[Any], client_sql: str | None = None
) -> list[tuple[Any, ...]]:
    """Run `sql` on `connection` and return its rows, the parameters bound by the server.

    Django's cursor binds on the client (psycopg's `ClientCursor`, quoting every value into the
    text) and wraps each call; for the add, that was more of the client's work than the rest of
    the add together. When nothing watches the connection's queries (no `DEBUG` or
    `CaptureQueriesContext`, no `execute_wrapper`), this runs the statement on a psycopg cursor
    that binds on the server, with the checks and the error translation of Django's cursor.
    Otherwise it goes through Django's cursor, and the casts in the text give the same types.

    In autocommit the statement is also prepared: psycopg parses and plans it on the server the
    first time a session runs it (in the same call, still one statement) and runs it by name
    after. Django turns psycopg's own preparing off for its connections (`prepare_threshold`
    None) and this keeps it so for every other query; parsing and planning the add's INSERT
    with its NOTIFY took the server longer than running it (bench/floor.py prepares too, as
    psycopg does by default). Inside a transaction nothing is prepared, so a failure to find the
    statement can never abort the caller's transaction: in autocommit, such a failure (a
    session that lost it, a pooler in transaction mode) runs the statement unprepared, and that
    connection runs its adds unprepared from then on (`_Session.prepares_adds`).
    """
    if _ServerCursor is None or connection.queries_logged or connection.execute_wrappers:
        with connection.cursor() as cursor:
            cursor.execute(client_sql or sql, params)
            return cursor.fetchall()
    # What Django's cursor() and execute() check and do around the database call.
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    connection.validate_no_broken_transaction()
    raw = connection.connection
    with connection.wrap_database_errors:
        if connection.in_atomic_block or not connection.autocommit:
            prepare = False
        else:
            session = _session(raw)
            prepare = session.prepares and session.prepares_adds
        if not prepare:
            with _ServerCursor(raw) as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()
        threshold = raw.prepare_threshold
        if threshold is None:
            raw.prepare_threshold = 0  # for this statement only: restored below
        try:
            with _ServerCursor(raw) as cursor:
                cursor.execute(sql, params, prepare=True)
                return cursor.fetchall()
        except _PreparedStatementErrors as error:
            session.prepares_adds = False
            logger.warning(
                "event=prepared_statements_off reason=%s sqlstate=%s",
                "the database session did not keep the add's prepared statement",
                _sqlstate(error),
            )
        finally:
            raw.prepare_threshold = threshold
        with _ServerCursor(raw) as cursor:
            cursor.execute(sql, params, prepare=False)
            return cursor.fetchall()


def _session(raw: Any) -> _Session:
    """What the psycopg connection `raw` has prepared (`_SESSIONS`)."""
    session = _SESSIONS.get(raw)
    if session is None:
        with _SESSIONS_LOCK:  # worker threads each have a connection, and share the map
            session = _SESSIONS.setdefault(raw, _Session())
    return session


class _QuietCursor:
    """psycopg's client-binding cursor on a Django connection, without Django's wrapper.

    It binds as Django's cursor does and translates errors the same way (Django's
    `DatabaseError`, the driver's error as `__cause__`), but skips the wrapper's bookkeeping
    around each call: on the claim, a statement that reads one row, that was a tenth of a
    millisecond between a NOTIFY and the handler.
    """

    def __init__(self, connection: Any) -> None:
        self.db = connection
        self.cursor = _ClientCursor(connection.connection)

    def __enter__(self) -> _QuietCursor:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.cursor.close()

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        with self.db.wrap_database_errors:
            self.cursor.execute(sql, params)

    def fetchall(self) -> list[tuple[Any, ...]]:
        with self.db.wrap_database_errors:
            return self.cursor.fetchall()


def _quiet_cursor(connection: Any) -> Any:
    """A cursor for statements the worker runs on every claim: `_QuietCursor`, or Django's
    own when something watches the connection's queries (`DEBUG`, `CaptureQueriesContext`,
    an `execute_wrapper`) or the driver is psycopg2."""
    if _ClientCursor is None or connection.queries_logged or connection.execute_wrappers:
        return connection.cursor()
    # What Django's cursor() checks before handing out a cursor (`_run` does the same).
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    connection.validate_no_broken_transaction()
    return _QuietCursor(connection)


#: The statements built so far, one dict per builder.
_BUILT: list[dict[tuple[Any, ...], PreparedSQL]] = []


def clear_statement_cache() -> None:
    """Forget the statements built so far; each is built again on its next use."""
    for built in _BUILT:
        built.clear()
    _FRESH_SQL.clear()


def _statement(builder: Callable[..., PreparedSQL]) -> Callable[..., PreparedSQL]:
    """Cache a statement builder that takes the store's connection and hashable arguments.

    The statement is built with the connection it will run on (its quoting and column types),
    never with `default`'s, which may be another database. Every PostgreSQL connection builds
    the same text, so one statement is kept per arguments, whatever the alias.
    """
    built: dict[tuple[Any, ...], PreparedSQL] = {}
    _BUILT.append(built)

    def cached(connection: Any, *args: Any) -> PreparedSQL:
        statement = built.get(args)
        if statement is None:
            statement = built[args] = builder(connection, *args)
        return statement

    cached.__doc__ = builder.__doc__
    return cached


#: Where a claim or a success write is its own transaction, that transaction does not wait
#: for its commit to reach the disk (`synchronous_commit` off for it alone, PostgreSQL's
#: asynchronous commit): the flush costs milliseconds, more than the statement itself, and is
#: on the path from an add to its handler. What a server crash can lose is the last fraction
#: of a second of claims and successes (never an add, never a handler's own writes, whose
#: commits flush every earlier one): those tasks run again, as at-least-once delivery allows.
_ASYNC_COMMIT = "set_config('synchronous_commit', 'off', true) IS NOT NULL"


@_statement
def _succeeded_sql(connection: Any, async_commit: bool) -> PreparedSQL:
    """The success of a claim's tasks (`mark_succeeded`)."""
    body = (
        f"UPDATE {connection.ops.quote_name(TaskRecord._meta.db_table)} "
        f"SET state = '{TaskState.SUCCEEDED}', finished_at = %(now)s, "
        "last_response_code = %(code)s, execution_count = execution_count + 1 "
        f"WHERE id = ANY(%(ids)s) AND state = '{TaskState.RUNNING}' AND worker_id = %(worker)s "
        "AND leased_at IS NOT DISTINCT FROM %(leased_at)s"
        + (f" AND {_ASYNC_COMMIT}" if async_commit else "")
        + " RETURNING id"
    )
    params = [
        ("ids", "bigint[]"),
        ("worker", "text"),
        ("leased_at", "timestamptz"),
        ("code", "smallint"),
        ("now", "timestamptz"),
    ]
    return prepared_sql(body, params)


@_statement
def _claim_sql(
    connection: Any, columns: tuple[str, ...], with_bucket: bool, async_commit: bool
) -> PreparedSQL:
    """The claim of `claim_in_one_statement`, with or without the token bucket.

    One round trip in autocommit instead of a transaction of five: `st` locks the queue's
    state row (FOR UPDATE hands back its newest version, after waiting for a concurrent claim)
    and refills the bucket, `due` picks and locks the tasks the tokens allow, `claimed` marks
    them RUNNING and `bucket` writes the level back. A queue without a state row claims
    nothing (LIMIT 0: a NULL limit would be no limit at all). The arithmetic
    is `ratelimit`'s refill(), available() and measured_rate(), in SQL. `async_commit`: the
    statement is its own transaction, committed without waiting for the disk (`_ASYNC_COMMIT`).
    """
    quote = connection.ops.quote_name
    table = quote(TaskRecord._meta.db_table)
    state_table = quote(QueueState._meta.db_table)
    params = [
        ("queue", "text"),
        ("now", "timestamptz"),
        ("max", "integer"),
        ("worker", "text"),
        ("lease_until", "timestamptz"),
    ]
    if with_bucket:
        params += [("rate", "float8"), ("size", "float8"), ("tc", "float8")]
        elapsed = "GREATEST(0, EXTRACT(EPOCH FROM (%(now)s - s.tokens_at))::float8)"
        tokens = (
            "CASE WHEN s.tokens_at IS NULL THEN %(size)s "
            f"ELSE LEAST(%(size)s, s.tokens + {elapsed} * %(rate)s) END"
        )
        previous_rate = (
            "CASE WHEN s.enforced_rate IS NULL OR s.tokens_at IS NULL THEN 0 "
            f"ELSE s.enforced_rate * EXP(-{elapsed} / %(tc)s) END"
        )
        wanted = "LEAST(%(max)s, GREATEST(0, FLOOR(tokens + 1e-9)))::int"
    else:
        tokens = previous_rate = "NULL::float8"
        wanted = "%(max)s"
    returned = ", ".join(
        f"due.{quote(c)}" if c in ("eta", "first_attempt_at") else f"t.{quote(c)}" for c in columns
    )
    body = (
        "WITH st AS MATERIALIZED (SELECT name, paused, tokens, previous_rate, "
        f"CASE WHEN paused THEN 0 ELSE {wanted} END AS wanted "
        f"FROM (SELECT s.name, s.paused, {tokens} AS tokens, {previous_rate} AS previous_rate "
        f"FROM {state_table} AS s WHERE s.name = %(queue)s FOR UPDATE) AS locked"
        + (f" WHERE {_ASYNC_COMMIT}" if async_commit else "")
        + "), "
        f"due AS (SELECT id, eta, first_attempt_at FROM {table} "
        f"WHERE queue_name = %(queue)s AND state = '{TaskState.QUEUED}' AND eta <= %(now)s "
        "ORDER BY priority DESC, eta, id LIMIT COALESCE((SELECT wanted FROM st), 0) "
        "FOR UPDATE SKIP LOCKED), "
        f"claimed AS (UPDATE {table} AS t SET state = '{TaskState.RUNNING}', "
        "eta = %(lease_until)s, worker_id = %(worker)s, leased_at = %(now)s, "
        "first_attempt_at = COALESCE(t.first_attempt_at, %(now)s) "
        # The ids as an array too: the limit above is a subquery, which the planner cannot
        # estimate (it guesses a tenth of the due rows), and without the array it would
        # rather scan the whole table than look up a few ids by primary key.
        "FROM due WHERE t.id = due.id AND t.id = ANY(ARRAY(SELECT id FROM due)) "
        f"RETURNING {returned})"
    )
    if with_bucket:
        # Written on every claim of a queue not paused, empty or not, as in the transaction.
        body += (
            f", bucket AS (UPDATE {state_table} AS s SET "
            # GREATEST: never back in time (a `now` read before the lock wait), so no
            # second's tokens are handed out twice; it skips a NULL tokens_at.
            "tokens = st.tokens - (SELECT count(*) FROM claimed), "
            "tokens_at = GREATEST(s.tokens_at, %(now)s), "
            "enforced_rate = st.previous_rate + (SELECT count(*) FROM claimed) / %(tc)s, "
            "updated_at = %(now)s FROM st WHERE s.name = st.name AND NOT st.paused)"
        )
    body += " SELECT st.paused, st.wanted, st.tokens, claimed.* FROM st LEFT JOIN claimed ON true"
    return prepared_sql(body, params)
