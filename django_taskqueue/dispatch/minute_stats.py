"""Per-minute statistics written by the workers: counted in memory, added in one upsert per flush.

A worker's `MinuteStats` counts each finished attempt (`record`) by queue and minute, with no
I/O, and adds the counts to the minute's row, the hour's row and the queue's totals row. `tick` (called from the worker's loop) flushes the counts every
`STATS_FLUSH_INTERVAL_SECONDS`, and as soon as a minute with counts has ended, in one
statement for every queue and minute held; `flush` runs once more at shutdown. A flush adds to
the rows (`executed = executed + n`), so any number of workers share them without a lock.

Once a minute one worker also samples every queue's backlog (due, running and leased tasks):
the first to insert the minute's marker row takes the sample, the others find the row there and
skip it. `MinuteStatsPruner` deletes the rows past `STATS_RETENTION_SECONDS`.

The upsert is written per vendor here rather than with the ORM: `bulk_create(update_conflicts=
True)` can only overwrite a column with the new value, never add to it.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, IntegrityError, InterfaceError, connections, transaction
from django.db.models import Count, Q

from .. import clock
from ..conf import taskqueue_settings
from ..models import LIVE, QueueMinuteStats, TaskRecord, TaskState
from .dbretry import retry_conflicts
from .sweep import Sweep

logger = logging.getLogger("django_taskqueue")

#: `span` of the rows: a minute, an hour, a queue's totals since it began.
MINUTE, HOUR, TOTALS = 60, 3600, 0
#: `starts_at` of a queue's totals row.
TOTALS_STARTS_AT = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
#: `queue_name` of the rows that mark a minute's backlog sample as taken.
SAMPLE_MARKER = ""

_COUNTERS = ("executed", "failed", "retried", "run_seconds")
_SAMPLES = ("waiting", "running", "leased")
_KEY = ("queue_name", "span", "starts_at")
_COLUMNS = (*_KEY, *_COUNTERS, "max_run_seconds", *_SAMPLES)


def minute_of(at: datetime.datetime) -> datetime.datetime:
    """Return the start of the minute `at` falls in."""
    return at.replace(second=0, microsecond=0)


def hour_of(at: datetime.datetime) -> datetime.datetime:
    """Return the start of the hour `at` falls in."""
    return at.replace(minute=0, second=0, microsecond=0)


@dataclass
class Counts:
    """One queue's counts in one minute, as held in memory before a flush."""

    executed: int = 0
    failed: int = 0
    retried: int = 0
    run_seconds: float = 0.0
    max_run_seconds: float = 0.0

    def add(self, other: Counts) -> None:
        self.executed += other.executed
        self.failed += other.failed
        self.retried += other.retried
        self.run_seconds += other.run_seconds
        self.max_run_seconds = max(self.max_run_seconds, other.max_run_seconds)


class MinuteStats:
    """A worker's counts of finished attempts per queue and minute, flushed now and then."""

    def __init__(self, alias: str, flush_interval_seconds: float | None = None) -> None:
        self.alias = alias
        self.flush_interval_seconds = float(
            flush_interval_seconds or taskqueue_settings.STATS_FLUSH_INTERVAL_SECONDS
        )
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, datetime.datetime], Counts] = {}
        self._flushed_at = clock.monotonic()
        self._sampled_minute: datetime.datetime | None = None

    def record(
        self, queue_name: str, status: str, duration: float, at: datetime.datetime | None = None
    ) -> None:
        """Count one finished attempt: `status` is succeeded, retry, failed or dropped."""
        key = (queue_name, minute_of(at or clock.now()))
        with self._lock:
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = Counts()
            counts.executed += 1
            if status == "failed":
                counts.failed += 1
            elif status == "retry":
                counts.retried += 1
            counts.run_seconds += duration
            counts.max_run_seconds = max(counts.max_run_seconds, duration)

    def tick(self, now: datetime.datetime | None = None) -> None:
        """Flush when due and sample the backlog once a minute; log database errors, never raise."""
        now = now or clock.now()
        try:
            if self._flush_due(now):
                self.flush(now)
            if self._sampled_minute != minute_of(now):
                self.sample(now)
        except (DatabaseError, InterfaceError):
            # Statistics never stop a worker: the counts stay in memory for the next flush.
            logger.warning("event=stats_flush_failed", exc_info=True)

    def _flush_due(self, now: datetime.datetime) -> bool:
        with self._lock:
            if not self._counts:
                return False
            oldest = min(minute for _, minute in self._counts)
        ended = oldest < minute_of(now)
        return ended or clock.monotonic() - self._flushed_at >= self.flush_interval_seconds

    def flush(self, now: datetime.datetime | None = None) -> int:
        """Add the counts held to the table in one statement; return how many rows it touched."""
        with self._lock:
            held, self._counts = self._counts, {}
        self._flushed_at = clock.monotonic()
        if not held:
            return 0
        hours: dict[tuple[str, datetime.datetime], Counts] = {}
        totals: dict[str, Counts] = {}
        rows: list[tuple[Any, ...]] = []
        for (queue_name, minute), counts in sorted(held.items()):
            hours.setdefault((queue_name, hour_of(minute)), Counts()).add(counts)
            totals.setdefault(queue_name, Counts()).add(counts)
            rows.append(_row(queue_name, MINUTE, minute, counts))
        rows.extend(_row(name, HOUR, hour, counts) for (name, hour), counts in hours.items())
        rows.extend(
            _row(name, TOTALS, TOTALS_STARTS_AT, counts) for name, counts in sorted(totals.items())
        )
        try:
            upsert(self.alias, rows)
        except BaseException:
            with self._lock:  # kept for the next flush
                for key, counts in held.items():
                    self._counts.setdefault(key, Counts()).add(counts)
            raise
        return len(rows)

    def sample(self, now: datetime.datetime | None = None) -> bool:
        """Sample every queue's backlog if no worker has this minute; return whether we did."""
        from ..queues import all_queue_configs

        now = now or clock.now()
        minute = minute_of(now)
        self._sampled_minute = minute
        stats = QueueMinuteStats.objects.using(self.alias)
        try:
            # The unique (queue_name, minute) constraint elects one sampler per minute.
            with transaction.atomic(using=self.alias):
                stats.create(queue_name=SAMPLE_MARKER, span=MINUTE, starts_at=minute)
        except IntegrityError:
            return False
        names = list(all_queue_configs())
        live = {
            row["queue_name"]: row
            for row in TaskRecord.objects.using(self.alias)
            .filter(LIVE, queue_name__in=names)
            .values("queue_name")
            .annotate(
                waiting=Count("id", filter=Q(state=TaskState.QUEUED, eta__lte=now)),
                running=Count("id", filter=Q(state=TaskState.RUNNING)),
                leased=Count("id", filter=Q(method="PULL", leased_at__isnull=False, eta__gt=now)),
            )
            .order_by()
        }
        rows = []
        for name in names:
            row: Mapping[str, Any] = live.get(name, {})
            rows.append(
                _row(
                    name,
                    MINUTE,
                    minute,
                    Counts(),
                    waiting=row.get("waiting", 0),
                    running=row.get("running", 0),
                    leased=row.get("leased", 0),
                )
            )
        upsert(self.alias, rows)
        return True


def _row(
    queue_name: str,
    span: int,
    starts_at: datetime.datetime,
    counts: Counts,
    *,
    waiting: int | None = None,
    running: int | None = None,
    leased: int | None = None,
) -> tuple[Any, ...]:
    return (
        queue_name,
        span,
        starts_at,
        counts.executed,
        counts.failed,
        counts.retried,
        counts.run_seconds,
        counts.max_run_seconds,
        waiting,
        running,
        leased,
    )


def upsert(alias: str, rows: list[tuple[Any, ...]]) -> None:
    """Add `rows` (in `_COLUMNS` order) to the table: counters add up, samples replace."""
    connection = connections[alias]
    quote = connection.ops.quote_name
    table = quote(QueueMinuteStats._meta.db_table)
    vendor = connection.vendor
    params: list[Any] = []
    # In the unique key's order, so two upserts take their row locks in the same order.
    for row in sorted(rows, key=lambda row: (row[0], row[1], row[2])):
        params.extend(row[:2])
        params.append(connection.ops.adapt_datetimefield_value(row[2]))
        params.extend(row[3:])
    placeholders = ", ".join(["(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"] * len(rows))
    columns = ", ".join(quote(c) for c in _COLUMNS)
    if vendor == "mysql":
        # MariaDB has no alias for the new row; VALUES(col) names it.
        def new(column: str) -> str:
            return f"VALUES({quote(column)})"

        def old(column: str) -> str:
            return quote(column)

        conflict = "ON DUPLICATE KEY UPDATE"
        greatest = "GREATEST"
    else:
        # PostgreSQL and SQLite (3.24+) share ON CONFLICT ... DO UPDATE and EXCLUDED.
        def new(column: str) -> str:
            return f"EXCLUDED.{quote(column)}"

        def old(column: str) -> str:
            return f"{table}.{quote(column)}"

        conflict = f"ON CONFLICT ({', '.join(quote(c) for c in _KEY)}) DO UPDATE SET"
        greatest = "GREATEST" if vendor == "postgresql" else "MAX"
    updates = [f"{quote(c)} = {old(c)} + {new(c)}" for c in _COUNTERS]
    updates.append(
        f"{quote('max_run_seconds')} = "
        f"{greatest}({old('max_run_seconds')}, {new('max_run_seconds')})"
    )
    updates += [f"{quote(c)} = COALESCE({new(c)}, {old(c)})" for c in _SAMPLES]
    sql = f"INSERT INTO {table} ({columns}) VALUES {placeholders} {conflict} {', '.join(updates)}"

    def execute() -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)

    # Workers stopping together all flush the same rows; MariaDB can still pick a deadlock
    # victim among them (two waiters on a row just inserted both upgrade their shared lock).
    retry_conflicts(execute)


class MinuteStatsPruner(Sweep):
    """Delete minute and hour rows older than `STATS_RETENTION_SECONDS` (totals rows stay)."""

    name = "minute-stats-pruner"

    def run(self, now: datetime.datetime) -> int:
        cutoff = now - datetime.timedelta(seconds=taskqueue_settings.STATS_RETENTION_SECONDS)
        stats = QueueMinuteStats.objects.using(self.alias)
        pruned = 0
        for _ in range(10):
            ids = list(
                stats.filter(span__gt=TOTALS, starts_at__lt=cutoff).values_list("id", flat=True)[
                    : self.limit
                ]
            )
            if not ids:
                break
            pruned += stats.filter(id__in=ids).delete()[0]
            if len(ids) < self.limit:
                break
        if pruned:
            logger.info("event=pruned_stats rows=%s", pruned)
        return pruned
