"""Maintenance sweeps run by every worker: small named services, each with an interval and a limit.

* `Rescuer` -- a RUNNING push task whose claim lease has expired belongs to a worker that died
  (SIGKILL, lost machine). It counts as a failed attempt ("worker lost") and is queued again
  after its backoff, or failed for good when its retry policy says so.
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
    """Queue again the push tasks whose worker died: their claim lease has expired."""

    name = "rescuer"
    reason = "worker lost"

    def run(self, now: datetime.datetime) -> int:
        tasks = store(self.alias)
        rescued = 0
        for row in tasks.expired_claims(now, self.limit):
            decision = outcome.decide(
                retry_count=row["retry_count"],
                retry_options=row["retry_options"],
                queue_parameters=outcome.queue_retry_parameters(row["queue_name"]),
                first_attempt_at=row["first_attempt_at"],
                now=now,
            )
            entry = outcome.error_entry(
                now=now,
                attempt=row["retry_count"] + 1,
                reason=self.reason,
                status_code=None,
                error=None,
                traceback=None,
                worker_id=row["worker_id"],
            )
            lost = outcome.failure(
                decision,
                status_code=None,
                reason=self.reason,
                errors=list(row["errors"] or []),
                new_error=entry,
                reached_handler=True,
            )
            if tasks.rescue(row, lost, now):
                rescued += 1
                logger.warning(
                    "event=rescued queue=%s task=%s worker=%s will_retry=%s",
                    row["queue_name"],
                    row["name"],
                    row["worker_id"],
                    decision.will_retry,
                )
        return rescued


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


def default_sweeps(alias: str) -> list[Sweep]:
    """Return the sweeps a worker runs, with their intervals from the settings."""
    return [
        Rescuer(alias, taskqueue_settings.RESCUE_INTERVAL_SECONDS),
        Pruner(alias, taskqueue_settings.PRUNE_INTERVAL_SECONDS),
        MinuteStatsPruner(alias, taskqueue_settings.PRUNE_INTERVAL_SECONDS),
    ]
