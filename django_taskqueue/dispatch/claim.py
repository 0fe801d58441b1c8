"""Claims: a push queue's configuration turned into one claim of the task store.

A claim is the only place where push tasks move from QUEUED to RUNNING; the store does it
(`TaskStore.claim`: one transaction, or one statement on PostgreSQL) under the queue's lock,
within its token bucket and `max_concurrent_requests`. Each task's lease (`eta` while RUNNING)
is the deadline plus a margin: the last resort for a task whose worker died without ever
announcing itself (a dead worker is found by its heartbeat first, `sweeps.Rescuer`).
"""

from __future__ import annotations

import datetime

from ..db import store
from ..db.rows import Bucket, ClaimedTask, ClaimResult
from ..queues import QueueConfig

__all__ = ["ClaimResult", "ClaimedTask", "claim", "ensure_queue_state", "has_due_tasks"]


def ensure_queue_state(alias: str, queue_name: str) -> None:
    """Create the queue's `QueueState` row if it is missing (outside the claim's hot path)."""
    store(alias).ensure_queue_state(queue_name)


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
    bucket = None
    if rate_limits:
        bucket = Bucket(config.rate or 0.0, config.bucket_size, config.max_concurrent_requests)
    return store(alias).claim(
        config.name,
        now=now,
        worker_id=worker_id,
        max_tasks=max_tasks,
        lease_until=now + datetime.timedelta(seconds=lease_seconds),
        bucket=bucket,
    )


def has_due_tasks(alias: str, queue_names: list[str], now: datetime.datetime) -> bool:
    """Return whether any of the queues has a QUEUED task due at `now`."""
    return store(alias).has_due_tasks(queue_names, now)
