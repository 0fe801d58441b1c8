"""The portable task store: every transition of a task row, written with the ORM.

Each verb is one conditional write (or one transaction) that applies only to rows in the state
the transition starts from; vendors override the verbs they do in fewer round trips.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from operator import attrgetter
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import F, QuerySet
from django.db.models.functions import Coalesce

from ..models import (
    FINISHED_STATES,
    LIVE,
    QueueState,
    TaskRecord,
    TaskState,
    WorkerHeartbeat,
)
from .claims import ClaimVerbs
from .features import BaseFeatures
from .rows import (
    ANY_TAG,
    FRESH_COLUMNS,
    FRESH_CONSTANTS,
    INSERT_COLUMNS,
    LEASE_COLUMNS,
    RESCUE_COLUMNS,
    ClaimKey,
    Failure,
    OneStatementClaim,
    TaskRow,
    all_fresh,
)

__all__ = [
    "ANY_TAG",
    "INSERT_COLUMNS",
    "LEASE_COLUMNS",
    "Operations",
    "OneStatementClaim",
    "TaskRow",
    "TaskStore",
    "all_fresh",
]


#: What the rescuer reads of a worker's heartbeat row.
_WORKER_COLUMNS = ("worker_id", "beat_at", "started")


class TaskStore(ClaimVerbs):
    """Every write of a task row for one database alias, written with the ORM.

    Subclasses replace a verb with vendor SQL where one statement can do the work of several,
    and set `features` to say what they can do.
    """

    features: type[BaseFeatures] = BaseFeatures

    def __init__(self, alias: str, connection: Any = None):
        self.alias = alias
        # `store()` passes the connection it looked up: each lookup goes through a thread-local.
        self.connection = connections[alias] if connection is None else connection

    # -- helpers --------------------------------------------------------------------------

    @property
    def table(self) -> str:
        return self.connection.ops.quote_name(TaskRecord._meta.db_table)

    def tasks(self) -> QuerySet[TaskRecord]:
        return TaskRecord.objects.using(self.alias)

    def prepared_rows(self, rows: Sequence[TaskRow], fresh: bool = False) -> list[tuple[Any, ...]]:
        """Convert rows to database parameters with each model field's own adaptation.

        With `fresh` (`all_fresh(rows)`), only the columns of `FRESH_COLUMNS`: the statement of
        `insert_sql(count, fresh=True)` writes the others as constants.
        """
        connection = self.connection
        fields = _insert_fields(fresh)
        values = _row_values(fresh)
        # A text column's adaptation returns a str or None unchanged, so those skip the field
        # call; every other column (JSON, bytes, datetimes, and integers, which psycopg 3 types)
        # goes through its field. This halves the cost of preparing a row (bench/ab.py).
        return [
            tuple(
                value
                if text and (value is None or isinstance(value, str))
                else column.get_db_prep_save(value, connection)
                for (column, text), value in zip(fields, values(row), strict=True)
            )
            for row in rows
        ]

    def insert_sql(self, count: int, fresh: bool = False) -> str:
        """The INSERT of `count` rows, of `prepared_rows(rows, fresh)`'s parameters."""
        key = (self.connection.vendor, count, fresh)
        sql = _INSERT_SQL.get(key)
        if sql is None:
            if fresh:
                names = FRESH_COLUMNS + tuple(FRESH_CONSTANTS)
                marks = ["%s"] * len(FRESH_COLUMNS) + list(FRESH_CONSTANTS.values())
            else:
                names, marks = INSERT_COLUMNS, ["%s"] * len(INSERT_COLUMNS)
            columns = ", ".join(self.connection.ops.quote_name(c) for c in names)
            placeholder = "(" + ", ".join(marks) + ")"
            sql = f"INSERT INTO {self.table} ({columns}) VALUES " + ", ".join([placeholder] * count)
            _INSERT_SQL[key] = sql
        return sql

    # -- claimed tasks ---------------------------------------------------------------------

    def release(self, key: ClaimKey, eta: datetime.datetime) -> bool:
        """Give a claimed task that never started back to its queue, due at `eta` again."""
        return bool(self._held(key).update(state=TaskState.QUEUED, eta=eta, worker_id=None))

    def extend_claim(self, key: ClaimKey, lease_until: datetime.datetime) -> bool:
        """Move a running task's lease to `lease_until`; False if no longer the claim's."""
        return bool(self._held(key).update(eta=lease_until))

    def release_unstarted(self, worker_id: str, ids: Sequence[int], now: datetime.datetime) -> int:
        """Give the claimed tasks `ids` that never started back to their queue, due at `now`.

        One statement for many tasks, for a worker on its way out (a second signal, a lost
        database): no attempt is charged. Returns how many were still the worker's.
        """
        if not ids:
            return 0
        return (
            self.tasks()
            .filter(id__in=list(ids), state=TaskState.RUNNING, worker_id=worker_id)
            .update(state=TaskState.QUEUED, eta=now, worker_id=None)
        )

    def _held(self, key: ClaimKey) -> QuerySet[TaskRecord]:
        """The task row, only while it is RUNNING under the claim `key`."""
        rows = self.tasks().filter(
            id=key.id, state=TaskState.RUNNING, worker_id=key.worker_id, leased_at=key.leased_at
        )
        return rows if key.eta is None else rows.filter(eta=key.eta)

    def listen(self, wake: Callable[[], None], stopping: Callable[[], bool]) -> None:
        """Call `wake()` whenever an add commits, until `stopping()` (`can_notify_workers`)."""
        raise NotImplementedError("this store cannot notify workers")

    def notify_channel(self) -> Any:
        """A connection whose socket a caller waits on for adds (`can_push_notifications`)."""
        raise NotImplementedError("this store has no notifications to wait on")

    # -- enqueue --------------------------------------------------------------------------

    def insert(self, rows: Sequence[TaskRow], notify: bool, random_names: bool = False) -> set[str]:
        """Insert rows whose name is free; return the names inserted.

        `random_names` says every name was drawn at random for this insert (an add of unnamed
        tasks), so no name can be taken: a vendor's store then writes a plain INSERT, without
        the clause that skips conflicts (on PostgreSQL, 15 to 30 µs of the server's time per
        one-task add, measured with the commit's flush off). Should a name be taken all the
        same, the insert raises IntegrityError.

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
        return {r["name"]: dict(r) for r in rows.values("name", "state", "finished_at")}

    def drop_expired_tombstones(
        self, queue_name: str, names: Iterable[str], cutoff: datetime.datetime
    ) -> int:
        """Delete finished rows of `names` whose tombstone ended before `cutoff`."""
        return (
            self.tasks()
            .filter(
                queue_name=queue_name,
                name__in=list(names),
                state__in=FINISHED_STATES,
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
            if not self.features.has_row_locks:
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

    def _own(
        self,
        rows: list[dict[str, Any]],
        now: datetime.datetime,
        lease_until: datetime.datetime,
        may_lease: Callable[[dict[str, Any]], bool],
    ) -> list[dict[str, Any]]:
        leased: list[dict[str, Any]] = []
        exhausted: list[dict[str, Any]] = []
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

    def succeed(
        self,
        key: ClaimKey,
        *,
        now: datetime.datetime,
        status_code: int | None,
        return_value: Any,
    ) -> bool:
        """Mark one claimed task SUCCEEDED with its return value; False if no longer the claim's."""
        return bool(
            self._held(key).update(
                state=TaskState.SUCCEEDED,
                finished_at=now,
                last_response_code=status_code,
                return_value=return_value,
                execution_count=F("execution_count") + 1,
            )
        )

    def retry_or_fail(self, key: ClaimKey, failure: Failure, now: datetime.datetime) -> bool:
        """Queue the task again after its backoff, or mark it FAILED; False if no longer held."""
        values: dict[str, Any] = {
            "retry_count": failure.failures,
            "last_response_code": failure.status_code,
            "last_retry_reason": (failure.reason or "")[:200] or None,
            "errors": failure.errors,
        }
        if failure.last_error is not None:
            values["last_error"] = failure.last_error
        if failure.reached_handler:
            values["execution_count"] = F("execution_count") + 1
        if failure.lost_count is not None:
            values["lost_count"] = failure.lost_count
        if failure.will_retry:
            values.update(state=TaskState.QUEUED, eta=failure.eta)
        else:
            values.update(state=TaskState.FAILED, finished_at=now)
        return bool(self._held(key).update(**values))

    # -- sweeps ---------------------------------------------------------------------------

    def expired_claims(self, now: datetime.datetime, limit: int) -> list[dict[str, Any]]:
        """Return up to `limit` RUNNING push tasks whose claim lease ended before `now`."""
        return list(
            self.tasks()
            .filter(state=TaskState.RUNNING, eta__lt=now)
            .exclude(method="PULL")
            .order_by("eta")
            .values(*RESCUE_COLUMNS)[:limit]
        )

    def rescue(self, row: dict[str, Any], failure: Failure, now: datetime.datetime) -> bool:
        """Write the lost attempt of an expired claim (`expired_claims`); False if it moved.

        Conditional on the row as read, its `eta` included: another rescuer, or the worker
        finishing at the last moment, may have moved it since.
        """
        key = ClaimKey(row["id"], row["worker_id"], row["leased_at"], eta=row["eta"])
        return self.retry_or_fail(key, failure, now)

    def requeue_lost(self, row: dict[str, Any], lost_count: int, now: datetime.datetime) -> bool:
        """Queue again, uncharged, a task a dead worker held but never started (`tasks_of`).

        Its attempt counts, its error history and the reason the next attempt is told stay as
        they were; only `lost_count` grows. Conditional on the row as read, like `rescue`.
        """
        key = ClaimKey(row["id"], row["worker_id"], row["leased_at"], eta=row["eta"])
        return bool(
            self._held(key).update(
                state=TaskState.QUEUED, eta=now, worker_id=None, lost_count=lost_count
            )
        )

    # -- workers --------------------------------------------------------------------------

    def beat(self, worker_id: str, now: datetime.datetime, started: Sequence[int]) -> None:
        """Announce the worker alive at `now`, with the tasks it has started: one UPDATE.

        The row is inserted on the first beat, and again if a rescuer took the worker for
        dead (after a long database outage) and deleted it.
        """
        rows = WorkerHeartbeat.objects.using(self.alias)
        if not rows.filter(worker_id=worker_id).update(beat_at=now, started=list(started)):
            rows.create(worker_id=worker_id, started_at=now, beat_at=now, started=list(started))

    def forget_worker(self, worker_id: str, beat_at: datetime.datetime | None = None) -> None:
        """Delete the worker's row (its clean exit); with `beat_at`, only if it beat no more."""
        rows = WorkerHeartbeat.objects.using(self.alias).filter(worker_id=worker_id)
        if beat_at is not None:
            rows = rows.filter(beat_at=beat_at)
        rows.delete()

    def worker(self, worker_id: str) -> dict[str, Any] | None:
        """Return the row of `worker_id` (`worker_id`, `beat_at`, `started`), or None."""
        found = (
            WorkerHeartbeat.objects.using(self.alias)
            .filter(worker_id=worker_id)
            .values(*_WORKER_COLUMNS)
            .first()
        )
        return dict(found) if found is not None else None

    def dead_workers(
        self, before: datetime.datetime, exclude: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """Return up to `limit` workers whose last beat is older than `before`."""
        rows = WorkerHeartbeat.objects.using(self.alias).filter(beat_at__lt=before)
        if exclude is not None:
            rows = rows.exclude(worker_id=exclude)
        found = rows.order_by("beat_at").values(*_WORKER_COLUMNS)[:limit]
        return [dict(row) for row in found]

    def tasks_of(self, worker_id: str, limit: int) -> list[dict[str, Any]]:
        """Return up to `limit` RUNNING push tasks claimed by `worker_id`."""
        return list(
            self.tasks()
            .filter(state=TaskState.RUNNING, worker_id=worker_id)
            .exclude(method="PULL")
            .order_by("id")
            .values(*RESCUE_COLUMNS)[:limit]
        )

    def prune(
        self, states: Sequence[str], cutoff: datetime.datetime, limit: int, max_batches: int
    ) -> int:
        """Delete rows in `states` finished before `cutoff`, `limit` at a time; return how many."""
        tasks = self.tasks()
        pruned = 0
        for _ in range(max_batches):
            ids = list(
                tasks.filter(state__in=states, finished_at__lt=cutoff).values_list("id", flat=True)[
                    :limit
                ]
            )
            if not ids:
                break
            # Re-checked in the DELETE: a row revived meanwhile (admin retry) stays.
            pruned += tasks.filter(id__in=ids, state__in=states, finished_at__lt=cutoff).delete()[0]
            if len(ids) < limit:
                break
        return pruned

    # -- admin ----------------------------------------------------------------------------

    def run_now(self, selection: QuerySet[TaskRecord], now: datetime.datetime) -> int:
        """Make the waiting tasks among `selection` due at `now`; return how many."""
        return selection.filter(state=TaskState.QUEUED).update(eta=now)

    def retry_failed(self, selection: QuerySet[TaskRecord], now: datetime.datetime) -> int:
        """Queue the FAILED tasks among `selection` again from a fresh start (counts reset)."""
        return selection.filter(state=TaskState.FAILED).update(
            state=TaskState.QUEUED,
            eta=now,
            finished_at=None,
            retry_count=0,
            execution_count=0,
            first_attempt_at=None,
            worker_id=None,
        )

    # -- delete ---------------------------------------------------------------------------

    def delete_by_names(
        self, queue_name: str, names: Sequence[str], now: datetime.datetime
    ) -> set[str]:
        """Tombstone the live tasks among `names`; return the names that were live."""
        with transaction.atomic(using=self.alias):
            rows = list(
                self.tasks()
                .filter(LIVE, queue_name=queue_name, name__in=names)
                .select_for_update()
                .values_list("id", "name")
            )
            if rows:
                self.tasks().filter(id__in=[r[0] for r in rows]).update(
                    state=TaskState.DELETED, finished_at=now
                )
        return {r[1] for r in rows}

    def delete_by_ids(
        self, queue_name: str, ids: Sequence[int], now: datetime.datetime
    ) -> set[int]:
        """Tombstone the live tasks of the queue among the rows `ids`; return the ids that were."""
        with transaction.atomic(using=self.alias):
            live = list(
                self.tasks()
                .filter(LIVE, queue_name=queue_name, id__in=ids)
                .select_for_update()
                .values_list("id", flat=True)
            )
            if live:
                self.tasks().filter(id__in=live).update(state=TaskState.DELETED, finished_at=now)
        return set(live)

    def purge(self, queue_name: str, now: datetime.datetime) -> int:
        """Tombstone every live task of the queue; return how many."""
        return (
            self.tasks()
            .filter(LIVE, queue_name=queue_name)
            .update(state=TaskState.DELETED, finished_at=now)
        )


#: INSERT statements by (vendor, row count, fresh): built once, not on every add.
_INSERT_SQL: dict[tuple[str, int, bool], str] = {}

#: Field types whose adaptation passes a str (or None) through unchanged on every backend.
_TEXT_TYPES = frozenset({"CharField", "TextField"})


@cache
def _insert_fields(fresh: bool) -> list[tuple[Any, bool]]:
    """(field, is a text column) of each parameter column of `insert_sql(count, fresh)`."""
    columns = FRESH_COLUMNS if fresh else INSERT_COLUMNS
    fields = [TaskRecord._meta.get_field(column) for column in columns]
    return [(f, f.get_internal_type() in _TEXT_TYPES) for f in fields]


@cache
def _row_values(fresh: bool) -> Callable[[TaskRow], tuple[Any, ...]]:
    """A function that gives a row's values of the parameter columns of `insert_sql`."""
    return attrgetter(*(FRESH_COLUMNS if fresh else INSERT_COLUMNS))


#: The name the enqueue path and the benchmarks know the store by.
Operations = TaskStore
