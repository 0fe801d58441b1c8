"""Claims: take due push tasks of a queue, within its rate and concurrency limits, in one transaction.

A claim is the only place where push tasks move from QUEUED to RUNNING. It runs in one
transaction that

1. locks the queue's `QueueState` row, which serializes claims of one queue across every
   worker (the token bucket and the running count are read and written under that lock);
2. refills the token bucket (`rate`, `bucket_size`) up to now;
3. counts the queue's RUNNING tasks, for `max_concurrent_requests`;
4. selects up to min(tokens, free concurrency, batch size) due QUEUED tasks, highest priority
   then oldest ETA first;
5. marks them RUNNING: `eta` becomes the claim's lease expiry (deadline + margin), `worker_id`,
   `leased_at` and `first_attempt_at` are set;
6. writes the bucket back, with the queue's measured dispatch rate (`enforced_rate`).

The lease is what makes a SIGKILL harmless: a task whose worker died stays RUNNING until its
lease expires, and the rescuer sweep then queues it again (`sweeps.Rescuer`).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models.functions import Coalesce

from ..db import operations
from ..db.base import OneStatementClaim
from ..models import QueueState, TaskRecord, TaskState
from ..queues import QueueConfig
from . import ratelimit

#: Columns a claim reads: what delivery needs and what the outcome is computed from.
CLAIM_COLUMNS = (
    "id",
    "queue_name",
    "name",
    "method",
    "url",
    "headers",
    "payload",
    "target",
    "eta",
    "retry_count",
    "execution_count",
    "retry_options",
    "first_attempt_at",
    "last_response_code",
    "last_retry_reason",
    "errors",
    "enqueued_at",
    "priority",
)


@dataclass
class ClaimedTask:
    """A push task claimed by this worker, as it was just before the claim."""

    id: int
    queue_name: str
    name: str
    method: str
    url: str
    headers: list[list[str]]
    payload: bytes | None
    target: str | None
    #: The task's ETA before the claim (sent as X-AppEngine-TaskETA).
    eta: datetime.datetime
    retry_count: int
    execution_count: int
    retry_options: dict[str, Any] | None
    first_attempt_at: datetime.datetime
    last_response_code: int | None
    last_retry_reason: str | None
    errors: list[Any] = field(default_factory=list)
    worker_id: str = ""
    leased_at: datetime.datetime | None = None
    lease_until: datetime.datetime | None = None
    enqueued_at: datetime.datetime | None = None
    priority: int = 0

    @property
    def attempt(self) -> int:
        """1 on the first attempt, 2 on the first retry, ..."""
        return self.retry_count + 1


@dataclass
class ClaimResult:
    """What one claim took, and when the next claim of the queue may be worth trying."""

    tasks: list[ClaimedTask]
    #: Seconds until the bucket holds a token again when it was empty; None otherwise.
    wait_seconds: float | None = None
    #: Whether the queue had more due tasks than the claim could take (tokens, concurrency).
    throttled: bool = False


def ensure_queue_state(alias: str, queue_name: str) -> None:
    """Create the queue's `QueueState` row if it is missing (outside the claim's hot path)."""
    QueueState.objects.using(alias).get_or_create(name=queue_name)


def claim(
    alias: str,
    config: QueueConfig,
    *,
    now: datetime.datetime,
    worker_id: str,
    max_tasks: int,
    lease_seconds: float,
    rate_limits: bool = True,
) -> ClaimResult:
    """Claim up to `max_tasks` due tasks of the push queue `config` for `worker_id`.

    Each task's lease lasts `lease_seconds` (the deadline plus a margin).

    `rate_limits=False` ignores `rate`, `bucket_size` and `max_concurrent_requests` (the test
    helper's mode, like App Engine's development server); a paused queue still dispatches
    nothing.
    """
    if config.paused_by_config or max_tasks <= 0:
        return ClaimResult([])
    lease_until = now + datetime.timedelta(seconds=lease_seconds)
    tasks = TaskRecord.objects.using(alias)
    if not (rate_limits and config.max_concurrent_requests is not None):
        # One statement where the vendor has one (PostgreSQL). A concurrency cap needs the
        # transaction below: its running count must be read after the queue lock is taken,
        # and a single statement reads everything from the snapshot it started with.
        fused = operations(alias).claim_in_one_statement(
            config.name,
            now=now,
            worker_id=worker_id,
            max_tasks=max_tasks,
            lease_until=lease_until,
            bucket=(config.rate or 0.0, config.bucket_size) if rate_limits else None,
            columns=CLAIM_COLUMNS,
        )
        if fused is not None:
            return _fused_result(tasks, config, fused, now, worker_id, max_tasks, lease_until)
    with transaction.atomic(using=alias):
        # SQLite has no row locks: lock_for_claim() takes the database's write lock first, so
        # the read-then-write below cannot fail on a lock upgrade. Elsewhere it does nothing.
        operations(alias).lock_for_claim()
        # Lock the queue's state row: claims of one queue run one at a time across all
        # workers, so the bucket level and the running count cannot be read by two claims
        # at once (each would spend the same tokens). Claims of other queues do not wait.
        state = QueueState.objects.using(alias).select_for_update().filter(name=config.name).first()
        if state is not None:
            if state.paused:
                return ClaimResult([])
            rows, wait_seconds, throttled = _claim_locked(
                tasks, state, config, now, worker_id, max_tasks, lease_until, rate_limits
            )
    if state is None:
        # The row is created once, outside the claim's transaction; the next claim uses it.
        ensure_queue_state(alias, config.name)
        return ClaimResult([], wait_seconds=0.0, throttled=True)
    claimed = [_claimed(row, worker_id, now, lease_until) for row in rows]
    return ClaimResult(claimed, wait_seconds=wait_seconds, throttled=throttled)


def _claim_locked(
    tasks: Any,
    state: QueueState,
    config: QueueConfig,
    now: datetime.datetime,
    worker_id: str,
    max_tasks: int,
    lease_until: datetime.datetime,
    rate_limits: bool,
) -> tuple[list[dict[str, Any]], float | None, bool]:
    due = tasks.filter(queue_name=config.name, state=TaskState.QUEUED, eta__lte=now)
    wanted = max_tasks
    tokens = 0.0
    if rate_limits:
        tokens = ratelimit.refill(
            state.tokens, state.tokens_at, now, config.rate or 0.0, config.bucket_size
        )
        wanted = min(wanted, ratelimit.available(tokens))
        if config.max_concurrent_requests is not None:
            # Read under the queue lock: every RUNNING row of this queue was committed by a
            # claim that held it, so the count cannot miss a concurrent claim.
            running = tasks.filter(queue_name=config.name, state=TaskState.RUNNING).count()
            wanted = min(wanted, config.max_concurrent_requests - running)
    wanted = max(wanted, 0)

    rows: list[dict[str, Any]] = []
    if wanted > 0:
        # SKIP LOCKED: a row locked by a delete or purge in progress is passed over rather
        # than waited for; the queue lock above already keeps other claims away.
        rows = list(
            due.order_by("-priority", "eta", "id")
            .select_for_update(skip_locked=True)
            .values(*CLAIM_COLUMNS)[:wanted]
        )
    if rows:
        tasks.filter(id__in=[r["id"] for r in rows]).update(
            state=TaskState.RUNNING,
            eta=lease_until,
            worker_id=worker_id,
            leased_at=now,
            first_attempt_at=Coalesce("first_attempt_at", now),
        )
    # Held back by the limits (not by a lack of due tasks): the caller waits for a token or
    # a free slot instead of polling.
    throttled = len(rows) == wanted < max_tasks and due.exists()
    wait_seconds = None
    if rate_limits:
        tokens -= len(rows)
        if throttled:
            wait_seconds = ratelimit.seconds_until_token(tokens, config.rate or 0.0)
        # Written on every claim, empty or not: a level only means something with the time
        # it was computed at. The dispatch rate decays from the same time.
        state.enforced_rate = ratelimit.measured_rate(
            state.enforced_rate, state.tokens_at, now, len(rows)
        )
        state.tokens = tokens
        # Never back in time: a claim whose `now` was read before it waited for the lock
        # would otherwise hand the next claim the same seconds' tokens a second time.
        state.tokens_at = now if state.tokens_at is None else max(state.tokens_at, now)
        state.updated_at = now
        state.save(update_fields=["tokens", "tokens_at", "enforced_rate", "updated_at"])
    return rows, wait_seconds, throttled


def _fused_result(
    tasks: Any,
    config: QueueConfig,
    fused: OneStatementClaim,
    now: datetime.datetime,
    worker_id: str,
    max_tasks: int,
    lease_until: datetime.datetime,
) -> ClaimResult:
    if not fused.found:
        ensure_queue_state(tasks.db, config.name)
        return ClaimResult([], wait_seconds=0.0, throttled=True)
    if fused.paused:
        return ClaimResult([])
    rows = fused.rows
    throttled = (
        len(rows) == fused.wanted < max_tasks
        and tasks.filter(queue_name=config.name, state=TaskState.QUEUED, eta__lte=now).exists()
    )
    wait_seconds = None
    if throttled and fused.tokens is not None:
        wait_seconds = ratelimit.seconds_until_token(fused.tokens, config.rate or 0.0)
    claimed = [_claimed(row, worker_id, now, lease_until) for row in rows]
    return ClaimResult(claimed, wait_seconds=wait_seconds, throttled=throttled)


def _claimed(
    row: dict[str, Any],
    worker_id: str,
    now: datetime.datetime,
    lease_until: datetime.datetime,
) -> ClaimedTask:
    payload = row["payload"]
    return ClaimedTask(
        id=row["id"],
        queue_name=row["queue_name"],
        name=row["name"],
        method=row["method"],
        url=row["url"],
        headers=row["headers"] or [],
        payload=bytes(payload) if payload is not None else None,
        target=row["target"],
        eta=row["eta"],
        retry_count=row["retry_count"],
        execution_count=row["execution_count"],
        retry_options=row["retry_options"],
        first_attempt_at=row["first_attempt_at"] or now,
        last_response_code=row["last_response_code"],
        last_retry_reason=row["last_retry_reason"],
        errors=list(row["errors"] or []),
        worker_id=worker_id,
        leased_at=now,
        lease_until=lease_until,
        enqueued_at=row["enqueued_at"],
        priority=row["priority"],
    )


def has_due_tasks(alias: str, queue_names: list[str], now: datetime.datetime) -> bool:
    """Return whether any of the queues has a QUEUED task due at `now`."""
    return (
        TaskRecord.objects.using(alias)
        .filter(queue_name__in=queue_names, state=TaskState.QUEUED, eta__lte=now)
        .exists()
    )
