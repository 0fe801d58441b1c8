"""Maintenance sweeps run by every worker: small named services, each with an interval and a limit.

* `Rescuer` -- the RUNNING push tasks of a worker that died (SIGKILL, lost machine), found by
  its silent heartbeat, or, last resort, by an expired claim lease. A task it had started
  counts as a failed attempt ("worker lost") and is queued again after its backoff, or failed
  when its retry policy says so; a task it never started goes back uncharged.
* `Pruner` -- succeeded and deleted tasks older than max(`TOMBSTONE_SECONDS`,
  `FINISHED_RETENTION_SECONDS`), failed tasks older than max(`TOMBSTONE_SECONDS`,
  `FAILED_RETENTION_SECONDS`), deleted in bounded batches.
* `MinuteStatsPruner` (in `minute_stats`) -- per-minute statistics past `STATS_RETENTION_SECONDS`.

Pull tasks need no sweep: a pull task stays QUEUED while leased, its lease being its `eta`, so
an expired lease is simply leasable again.

Every worker runs every sweep, so many may run one at once. They need no lock: the rescuer's
writes are conditional UPDATEs on the row as it was read (state, eta and claim), so exactly one
rescuer wins each task and a worker finishing late loses to it; deleting a row twice is a no-op.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from typing import Any

from .. import clock
from ..conf import taskqueue_settings
from ..db import store
from ..models import TaskState
from . import outcome
from .dbretry import DB_ERRORS
from .minute_stats import MinuteStatsPruner
from .sweep import Sweep

logger = logging.getLogger("django_taskqueue")


class Rescuer(Sweep):
    """Queue again the push tasks whose worker died.

    A dead worker is found by its heartbeat (`WorkerHeartbeat` silent for
    `WORKER_TIMEOUT_SECONDS`): each task it had started is charged a failed attempt ("worker
    lost"); each task it held without starting goes back uncharged. Every such task's
    `lost_count` grows, and one held by `MAX_WORKER_LOSSES` dead workers fails for good
    ("worker lost N times"). A claim whose lease expired is the last resort (a worker that
    never announced itself): its attempt is charged, as nothing says it did not start.
    """

    name = "rescuer"
    reason = "worker lost"

    def __init__(
        self, alias: str, interval_seconds: float, limit: int = 1000, worker_id: str | None = None
    ) -> None:
        super().__init__(alias, interval_seconds, limit)
        #: The worker running this sweep, never taken for dead by itself.
        self.worker_id = worker_id

    def run(self, now: datetime.datetime) -> int:
        return self.rescue_dead_workers(now) + self.rescue_expired_claims(now)

    def rescue_dead_workers(self, now: datetime.datetime) -> int:
        """Queue again the tasks of the workers whose heartbeat stopped; forget those workers."""
        tasks = store(self.alias)
        timeout = datetime.timedelta(seconds=float(taskqueue_settings.WORKER_TIMEOUT_SECONDS))
        rescued = 0
        for worker in tasks.dead_workers(now - timeout, self.worker_id, self.limit):
            done, held = self._rescue_held(worker["worker_id"], worker["started"], now)
            rescued += done
            if held < self.limit:
                # Only if it stayed silent: a worker back from an outage keeps its row.
                tasks.forget_worker(worker["worker_id"], beat_at=worker["beat_at"])
                logger.warning(
                    "event=worker_lost worker=%s last_beat=%s tasks=%s",
                    worker["worker_id"],
                    worker["beat_at"].isoformat(),
                    held,
                )
        return rescued

    def rescue_worker(self, worker_id: str, now: datetime.datetime) -> int:
        """Queue again every task of `worker_id`, known dead, now; forget the worker.

        What `rescue_dead_workers` does for a worker whose heartbeat stopped, for one whose
        death is certain without waiting for that: the supervisor of `--processes` saw its
        child exit. The tasks whose start its last beat carried are charged an attempt.
        """
        tasks = store(self.alias)
        worker = tasks.worker(worker_id)
        started = worker["started"] if worker is not None else None
        rescued = 0
        while True:
            done, held = self._rescue_held(worker_id, started, now)
            rescued += done
            # A batch of which some rows were not written (taken back meanwhile) stops here.
            if held < self.limit or done < held:
                break
        tasks.forget_worker(worker_id)
        return rescued

    def _rescue_held(
        self, worker_id: str, started: list[int] | None, now: datetime.datetime
    ) -> tuple[int, int]:
        """Rescue up to `limit` of the tasks `worker_id` holds; return (rescued, held)."""
        began = set(started or [])
        held = store(self.alias).tasks_of(worker_id, self.limit)
        rescued = sum(self._rescue(row, now, charged=row["id"] in began) for row in held)
        return rescued, len(held)

    def rescue_expired_claims(self, now: datetime.datetime) -> int:
        """Queue again the tasks whose claim lease expired (the last resort)."""
        tasks = store(self.alias)
        return sum(
            self._rescue(row, now, charged=True) for row in tasks.expired_claims(now, self.limit)
        )

    def _rescue(self, row: dict[str, Any], now: datetime.datetime, *, charged: bool) -> int:
        tasks = store(self.alias)
        lost = (row.get("lost_count") or 0) + 1
        exhausted = lost >= int(taskqueue_settings.MAX_WORKER_LOSSES)
        if not charged and not exhausted:
            written = tasks.requeue_lost(row, lost, now)
            if written:
                logger.warning(
                    "event=rescued queue=%s task=%s worker=%s charged=no lost=%s will_retry=True",
                    row["queue_name"],
                    row["name"],
                    row["worker_id"],
                    lost,
                )
            return int(written)
        decision = outcome.decide(
            retry_count=row["retry_count"],
            retry_options=row["retry_options"],
            queue_parameters=outcome.queue_retry_parameters(row["queue_name"]),
            first_attempt_at=row["first_attempt_at"],
            now=now,
            may_retry=not exhausted,
        )
        if not charged:
            # Failed for its losses, with its attempts as they were.
            decision = outcome.Decision(False, row["retry_count"], None)
        reason = f"worker lost {lost} times" if exhausted else self.reason
        entry = outcome.error_entry(
            now=now,
            attempt=row["retry_count"] + 1,
            reason=reason,
            status_code=None,
            error=None,
            traceback=None,
            worker_id=row["worker_id"],
        )
        lost_attempt = outcome.failure(
            decision,
            status_code=None,
            reason=self.reason,
            errors=list(row["errors"] or []),
            new_error=entry,
            reached_handler=charged,
        )
        lost_attempt = dataclasses.replace(lost_attempt, lost_count=lost)
        if not tasks.rescue(row, lost_attempt, now):
            return 0
        logger.warning(
            "event=rescued queue=%s task=%s worker=%s charged=%s lost=%s will_retry=%s",
            row["queue_name"],
            row["name"],
            row["worker_id"],
            "yes" if charged else "no",
            lost,
            decision.will_retry,
        )
        return 1


class Pruner(Sweep):
    """Delete tombstones and finished tasks past their retention, in bounded batches."""

    name = "pruner"
    #: Batches per run: a large backlog is worked off over several runs.
    max_batches = 10

    def run(self, now: datetime.datetime) -> int:
        tombstone = taskqueue_settings.TOMBSTONE_SECONDS
        policies: list[tuple[tuple[str, ...], Any]] = [
            (
                (TaskState.SUCCEEDED, TaskState.DELETED),
                max(tombstone, taskqueue_settings.FINISHED_RETENTION_SECONDS),
            ),
            ((TaskState.FAILED,), max(tombstone, taskqueue_settings.FAILED_RETENTION_SECONDS)),
        ]
        tasks = store(self.alias)
        pruned = 0
        for states, retention in policies:
            cutoff = now - datetime.timedelta(seconds=retention)
            pruned += tasks.prune(states, cutoff, self.limit, self.max_batches)
        if pruned:
            from ..deferred import prune_payloads

            # Large deferred calls live beside their tasks: they go with them.
            payloads = prune_payloads()
            logger.info("event=pruned tasks=%s deferred_payloads=%s", pruned, payloads)
        return pruned


class SweepScheduler:
    """Run each sweep when its interval has passed (on the monotonic clock)."""

    def __init__(self, sweeps: list[Sweep]) -> None:
        self.sweeps = sweeps
        self._due: dict[str, float] = {}

    def run_due(self) -> None:
        """Run the sweeps whose time has come; a sweep's own failure is logged, not raised.

        Database errors are raised: the worker's loop reconnects and pauses on them.
        """
        now_mono = clock.monotonic()
        for sweep in self.sweeps:
            if self._due.get(sweep.name, 0.0) > now_mono:
                continue
            self._due[sweep.name] = now_mono + sweep.interval_seconds
            try:
                sweep.run(clock.now())
            except DB_ERRORS:
                raise
            except Exception:
                logger.exception("event=sweep_failed sweep=%s", sweep.name)


def default_sweeps(alias: str, worker_id: str | None = None) -> list[Sweep]:
    """Return the sweeps the worker `worker_id` runs, with their intervals from the settings."""
    return [
        Rescuer(alias, taskqueue_settings.RESCUE_INTERVAL_SECONDS, worker_id=worker_id),
        Pruner(alias, taskqueue_settings.PRUNE_INTERVAL_SECONDS),
        MinuteStatsPruner(alias, taskqueue_settings.PRUNE_INTERVAL_SECONDS),
    ]
