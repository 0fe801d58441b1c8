"""The portable implementation of the hot-path verbs; vendors override what they do better."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce

from ..models import QueueState, TaskRecord, TaskState

#: Columns written by an insert, in this order.
INSERT_COLUMNS = (
    "queue_name",
    "name",
    "state",
    "method",
    "url",
    "headers",
    "payload",
    "tag",
    "target",
    "priority",
    "eta",
    "retry_count",
    "execution_count",
    "retry_options",
    "enqueued_at",
    "errors",
    "dispatch_deadline_usec",
)

#: Columns a lease reads to build the returned `Task` objects.
LEASE_COLUMNS = (
    "id",
    "name",
    "payload",
    "tag",
    "eta",
    "retry_count",
    "retry_options",
    "enqueued_at",
    "headers",
)

#: Marker: lease without regard to tags.
ANY_TAG = object()


@dataclass
class TaskRow:
    """The values of one task row to insert."""

    queue_name: str
    name: str
    method: str
    url: str
    headers: list[list[str]]
    payload: bytes | None
    tag: str | None
    target: str | None
    eta: datetime.datetime
    enqueued_at: datetime.datetime
    retry_options: dict[str, Any] | None = None
    priority: int = 0
    state: str = TaskState.QUEUED
    retry_count: int = 0
    execution_count: int = 0
    errors: list[Any] = field(default_factory=list)
    dispatch_deadline_usec: int | None = None

    def values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, column) for column in INSERT_COLUMNS)


@dataclass
class OneStatementClaim:
    """What `Operations.claim_in_one_statement` did."""

    #: False when the queue has no state row yet (nothing was claimed).
    found: bool
    paused: bool = False
    #: How many tasks the bucket and `max_tasks` allowed.
    wanted: int = 0
    #: The bucket's level after the claim (None when the bucket was ignored).
    tokens: float | None = None
    #: The claimed rows before the claim, as `columns` asked, JSON decoded.
    rows: list[dict[str, Any]] = field(default_factory=list)


class Operations:
    """Hot-path verbs for one database alias, written with the ORM.

    Subclasses replace a verb with vendor SQL where one statement can do the work of several.
    """

    def __init__(self, alias: str):
        self.alias = alias
        self.connection = connections[alias]

    # -- helpers --------------------------------------------------------------------------

    @property
    def table(self) -> str:
        return self.connection.ops.quote_name(TaskRecord._meta.db_table)

    def tasks(self):
        return TaskRecord.objects.using(self.alias)

    def prepared_rows(self, rows: Sequence[TaskRow]) -> list[tuple[Any, ...]]:
        """Convert rows to database parameters with each model field's own adaptation."""
        connection = self.connection
        # A text column's adaptation returns a str or None unchanged, so those skip the field
        # call; every other column (JSON, bytes, datetimes, and integers, which psycopg 3 types)
        # goes through its field. This halves the cost of preparing a row (bench/ab.py).
        return [
            tuple(
                value
                if text and (value is None or isinstance(value, str))
                else column.get_db_prep_save(value, connection)
                for (column, text), value in zip(_insert_fields(), row.values(), strict=True)
            )
            for row in rows
        ]

    def insert_sql(self, count: int) -> str:
        key = (self.connection.vendor, count)
        sql = _INSERT_SQL.get(key)
        if sql is None:
            columns = ", ".join(self.connection.ops.quote_name(c) for c in INSERT_COLUMNS)
            placeholder = "(" + ", ".join(["%s"] * len(INSERT_COLUMNS)) + ")"
            sql = f"INSERT INTO {self.table} ({columns}) VALUES " + ", ".join([placeholder] * count)
            _INSERT_SQL[key] = sql
        return sql

    def lock_for_claim(self) -> None:
        """Take whatever lock makes the following claim exclusive (nothing, with row locks)."""

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
    ) -> OneStatementClaim | None:
        """Claim due push tasks in one statement, or return None where the vendor cannot.

        The statement does what `dispatch.claim` does in its transaction: lock the queue's
        state row, refill its token bucket (`bucket` is `(rate, bucket_size)`; None ignores
        the bucket), take up to min(tokens, `max_tasks`) due tasks, mark them RUNNING and
        write the bucket back. The portable implementation has no such statement.
        """
        return None

    # -- enqueue --------------------------------------------------------------------------

    def insert(self, rows: Sequence[TaskRow], notify: bool) -> set[str]:
        """Insert rows whose name is free; return the names inserted.

        Portable fallback: one savepoint per row.
        """
        inserted = set()
        for row, params in zip(rows, self.prepared_rows(rows), strict=True):
            try:
                with transaction.atomic(using=self.alias):
                    with self.connection.cursor() as cursor:
                        cursor.execute(self.insert_sql(1), params)
            except IntegrityError:
                continue
            inserted.add(row.name)
        return inserted

    def existing(self, queue_name: str, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Return name -> {state, finished_at} for rows holding any of `names`."""
        rows = self.tasks().filter(queue_name=queue_name, name__in=list(names))
        return {r["name"]: r for r in rows.values("name", "state", "finished_at")}

    def drop_expired_tombstones(
        self, queue_name: str, names: Iterable[str], cutoff: datetime.datetime
    ) -> int:
        """Delete finished rows of `names` whose tombstone ended before `cutoff`."""
        return (
            self.tasks()
            .filter(
                queue_name=queue_name,
                name__in=list(names),
                state__in=(TaskState.SUCCEEDED, TaskState.FAILED, TaskState.DELETED),
                finished_at__lt=cutoff,
            )
            .delete()[0]
        )

    # -- pull -----------------------------------------------------------------------------

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
        """Lease up to `max_tasks` due tasks; return their rows as they are after the lease.

        `may_lease(row)` says whether a task's retry limit allows one more lease; a task that
        may not is moved to FAILED instead (App Engine drops it; we keep it visible).
        """
        with transaction.atomic(using=self.alias):
            self.lock_for_claim()
            due = self.tasks().filter(queue_name=queue_name, state=TaskState.QUEUED, eta__lte=now)
            # A paused queue leases nothing; the flag is read in the same statement.
            due = due.exclude(
                queue_name__in=QueueState.objects.using(self.alias)
                .filter(name=queue_name, paused=True)
                .values("name")
            )
            if group_by_tag and tag is None:
                # App Engine: the oldest task decides; its tag, or only untagged tasks.
                first = list(
                    due.order_by("eta")
                    .select_for_update(skip_locked=True)
                    .values_list("tag", flat=True)[:1]
                )
                if not first:
                    return []
                tag = first[0]
                if tag is None:
                    head = due.order_by("eta").select_for_update(skip_locked=True)
                    rows = [
                        r
                        for r in head.values(*LEASE_COLUMNS, "tag")[:max_tasks]
                        if r["tag"] is None
                    ]
                    return self._own(rows, now, lease_until, may_lease)
            if tag is not ANY_TAG:
                due = due.filter(tag__isnull=True) if tag is None else due.filter(tag=tag)
                ordered = due.order_by("eta")
            else:
                ordered = due.order_by("-priority", "eta")
            rows = list(
                ordered.select_for_update(skip_locked=True).values(*LEASE_COLUMNS)[:max_tasks]
            )
            return self._own(rows, now, lease_until, may_lease)

    def _own(self, rows, now, lease_until, may_lease) -> list[dict[str, Any]]:
        leased, exhausted = [], []
        for row in rows:
            (leased if may_lease(row) else exhausted).append(row)
        if exhausted:
            self.tasks().filter(id__in=[r["id"] for r in exhausted]).update(
                state=TaskState.FAILED,
                finished_at=now,
                last_retry_reason="lease limit reached",
            )
        if leased:
            self.tasks().filter(id__in=[r["id"] for r in leased]).update(
                eta=lease_until,
                retry_count=F("retry_count") + 1,
                leased_at=now,
                first_attempt_at=Coalesce("first_attempt_at", now),
            )
        for row in leased:
            row["eta"] = lease_until
            row["retry_count"] += 1
        leased.sort(key=lambda r: r["eta"])
        return leased

    def modify_lease(
        self,
        queue_name: str,
        name: str,
        held_eta: datetime.datetime,
        new_eta: datetime.datetime,
        now: datetime.datetime,
    ) -> bool:
        """Move the lease `held_eta` of a task to `new_eta` if it is still current and live."""
        return bool(
            self.tasks()
            .filter(
                queue_name=queue_name,
                name=name,
                state=TaskState.QUEUED,
                method="PULL",
                eta=held_eta,
                eta__gte=now,
            )
            .update(eta=new_eta)
        )

    # -- outcomes -------------------------------------------------------------------------

    def mark_succeeded(
        self,
        ids: Sequence[int],
        worker_id: str,
        leased_at: datetime.datetime | None,
        status_code: int | None,
        now: datetime.datetime,
    ) -> set[int]:
        """Mark the tasks `ids` SUCCEEDED if they are still this claim's; return those written.

        A task is still the claim's while it is RUNNING under `worker_id` with the claim's
        `leased_at`: one deleted, purged or rescued since is left alone.
        """
        ours = self.tasks().filter(
            id__in=ids, state=TaskState.RUNNING, worker_id=worker_id, leased_at=leased_at
        )
        written = ours.update(
            state=TaskState.SUCCEEDED,
            finished_at=now,
            last_response_code=status_code,
            execution_count=F("execution_count") + 1,
        )
        if written == len(ids):
            return set(ids)
        if not written:
            return set()
        # Some were taken from us meanwhile (rare): find out which were written.
        return set(
            self.tasks()
            .filter(id__in=ids, state=TaskState.SUCCEEDED, worker_id=worker_id, finished_at=now)
            .values_list("id", flat=True)
        )

    # -- delete ---------------------------------------------------------------------------

    def delete_by_names(
        self, queue_name: str, names: Sequence[str], now: datetime.datetime
    ) -> set[str]:
        """Tombstone the live tasks among `names`; return the names that were live."""
        with transaction.atomic(using=self.alias):
            rows = list(
                self.tasks()
                .filter(queue_name=queue_name, name__in=names, state__in=_LIVE)
                .select_for_update()
                .values_list("id", "name")
            )
            if rows:
                self.tasks().filter(id__in=[r[0] for r in rows]).update(
                    state=TaskState.DELETED, finished_at=now
                )
        return {r[1] for r in rows}

    def purge(self, queue_name: str, now: datetime.datetime) -> int:
        """Tombstone every live task of the queue; return how many."""
        return (
            self.tasks()
            .filter(Q(queue_name=queue_name) & Q(state__in=_LIVE))
            .update(state=TaskState.DELETED, finished_at=now)
        )


_LIVE = (TaskState.QUEUED, TaskState.RUNNING)

#: INSERT statements by (vendor, row count): built once, not on every add.
_INSERT_SQL: dict[tuple[str, int], str] = {}

#: Field types whose adaptation passes a str (or None) through unchanged on every backend.
_TEXT_TYPES = frozenset({"CharField", "TextField"})


@cache
def _insert_fields() -> list[tuple[Any, bool]]:
    """(field, is a text column) of each insert column, in INSERT_COLUMNS order."""
    fields = [TaskRecord._meta.get_field(column) for column in INSERT_COLUMNS]
    return [(f, f.get_internal_type() in _TEXT_TYPES) for f in fields]
