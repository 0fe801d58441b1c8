"""The shapes of task rows the store reads and writes, with one column list per read."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from ..models import TaskState

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

#: What a new task row holds in the insert columns that are the same for every new task: the
#: INSERT of rows that are all new (`all_fresh`) writes these as constants, not parameters.
FRESH_CONSTANTS = {
    "state": f"'{TaskState.QUEUED}'",
    "retry_count": "0",
    "execution_count": "0",
    "errors": "'[]'",
}

#: The insert columns of new rows that are parameters, in INSERT_COLUMNS order.
FRESH_COLUMNS = tuple(c for c in INSERT_COLUMNS if c not in FRESH_CONSTANTS)

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
    "dispatch_deadline_usec",
)

#: Columns the rescuer reads of a claim whose lease expired.
RESCUE_COLUMNS = (
    "id",
    "queue_name",
    "name",
    "eta",
    "worker_id",
    "leased_at",
    "retry_count",
    "retry_options",
    "first_attempt_at",
    "errors",
    "lost_count",
)

#: Marker: lease (or list) without regard to tags.
ANY_TAG: Any = object()


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


def all_fresh(rows: Any) -> bool:
    """Whether every row is a new task's: FRESH_CONSTANTS hold its values of those columns."""
    return all(
        row.state == TaskState.QUEUED
        and not row.retry_count
        and not row.execution_count
        and not row.errors
        for row in rows
    )


@dataclass
class ClaimedTask:
    """A push task claimed by a worker, as it was just before the claim (CLAIM_COLUMNS)."""

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
    #: The task's own attempt deadline (`Task.dispatch_deadline_usec`), or None.
    dispatch_deadline_usec: int | None = None

    def deadline_seconds(self, default: float) -> float:
        """Return the deadline of this attempt: the task's own, else `default`."""
        if self.dispatch_deadline_usec is None:
            return default
        return self.dispatch_deadline_usec / 1_000_000

    @property
    def attempt(self) -> int:
        """1 on the first attempt, 2 on the first retry, ..."""
        return self.retry_count + 1

    @property
    def key(self) -> ClaimKey:
        """The claim that holds this task, which every write of its outcome is conditional on."""
        return ClaimKey(self.id, self.worker_id, self.leased_at)

    @classmethod
    def from_row(
        cls,
        row: dict[str, Any],
        worker_id: str,
        now: datetime.datetime,
        lease_until: datetime.datetime,
    ) -> ClaimedTask:
        """Build the claimed task from its CLAIM_COLUMNS as they were before the claim."""
        payload = row["payload"]
        return cls(
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
            dispatch_deadline_usec=row.get("dispatch_deadline_usec"),
        )


@dataclass(frozen=True)
class ClaimKey:
    """A task as one claim holds it: a write applies only while the row is still this claim's.

    The row is the claim's while it is RUNNING under `worker_id` with the claim's `leased_at`
    (and, for the rescuer, the `eta` it read): one deleted, purged or rescued since is left
    alone.
    """

    id: int
    worker_id: str | None
    leased_at: datetime.datetime | None
    eta: datetime.datetime | None = None


@dataclass
class ClaimResult:
    """What one claim took, and when the next claim of the queue may be worth trying."""

    tasks: list[ClaimedTask]
    #: Seconds until the bucket holds a token again when it was empty; None otherwise.
    wait_seconds: float | None = None
    #: Whether the queue had more due tasks than the claim could take (tokens, concurrency).
    throttled: bool = False


@dataclass(frozen=True)
class Bucket:
    """A push queue's limits as a claim applies them."""

    rate: float
    size: int
    #: `max_concurrent_requests`; None for no cap.
    max_concurrent: int | None = None


@dataclass(frozen=True)
class Failure:
    """What a failed attempt writes: a retry after its backoff, or FAILED for good."""

    will_retry: bool
    #: The task's retry count after this failure.
    failures: int
    #: When the retry is due (None when the task fails for good).
    eta: datetime.datetime | None
    status_code: int | None
    reason: str | None
    #: The task's error history, with this attempt's entry already appended (if any).
    errors: list[Any]
    #: What `last_error` becomes; None leaves it as it is.
    last_error: str | None
    #: False when the request never reached a handler: execution_count stays.
    reached_handler: bool = True
    #: What `lost_count` becomes (a worker died holding the task); None leaves it as it is.
    lost_count: int | None = None


@dataclass
class OneStatementClaim:
    """What a vendor's one-statement claim did (`TaskStore.claim_in_one_statement`)."""

    #: False when the queue has no state row yet (nothing was claimed).
    found: bool
    paused: bool = False
    #: How many tasks the bucket and `max_tasks` allowed.
    wanted: int = 0
    #: The bucket's level after the claim (None when the bucket was ignored).
    tokens: float | None = None
    #: The bucket's refill rate (None when the bucket was ignored).
    rate: float | None = None
    #: The claimed rows before the claim, as `columns` asked, JSON decoded.
    rows: list[dict[str, Any]] = field(default_factory=list)
