"""Maintenance sweeps run by every worker: small named services, each with an interval and a limit.

* `Rescuer` -- a RUNNING push task whose claim lease has expired belongs to a worker that died
  (SIGKILL, lost machine). It counts as a failed attempt ("worker lost") and is queued again
  after its backoff, or failed for good when its retry policy says so.
* `Pruner` -- succeeded and deleted tasks older than max(`TOMBSTONE_SECONDS`,
  `FINISHED_RETENTION_SECONDS`), failed tasks older than max(`TOMBSTONE_SECONDS`,
  `FAILED_RETENTION_SECONDS`), deleted in bounded batches.

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

from ..conf import taskqueue_settings
from ..models import TaskRecord, TaskState
from . import outcome

logger = logging.getLogger("django_taskqueue")


class Sweep:
    """One maintenance service: `run()` does at most `limit` rows of work per batch."""

    name = "sweep"

    def __init__(self, alias: str, interval_seconds: float, limit: int = 1000) -> None:
        self.alias = alias
        self.interval_seconds = interval_seconds
        self.limit = limit

    def run(self, now: datetime.datetime) -> int:
        """Do one round of work; return how many rows it changed."""
        raise NotImplementedError


class Rescuer(Sweep):
    """Queue again the push tasks whose worker died: their claim lease has expired."""

    name = "rescuer"
    reason = "worker lost"

    def run(self, now: datetime.datetime) -> int:
        tasks = TaskRecord.objects.using(self.alias)
        expired = list(
            tasks.filter(state=TaskState.RUNNING, eta__lt=now)
            .exclude(method="PULL")
            .order_by("eta")
            .values(
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
            )[: self.limit]
        )
        rescued = 0
        for row in expired:
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
            # Conditional on the row as read: another rescuer, or the worker finishing at
            # the last moment, may have moved it since.
            rows = tasks.filter(
                id=row["id"],
                state=TaskState.RUNNING,
                eta=row["eta"],
                worker_id=row["worker_id"],
                leased_at=row["leased_at"],
            )
            if outcome.record_failure(
                rows,
                decision=decision,
                now=now,
                status_code=None,
                reason=self.reason,
                errors=list(row["errors"] or []),
                new_error=entry,
                reached_handler=True,
            ):
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
        tasks = TaskRecord.objects.using(self.alias)
        pruned = 0
        for states, retention in policies:
            cutoff = now - datetime.timedelta(seconds=retention)
            for _ in range(self.max_batches):
                ids = list(
                    tasks.filter(state__in=states, finished_at__lt=cutoff).values_list(
                        "id", flat=True
                    )[: self.limit]
                )
                if not ids:
                    break
                # Re-checked in the DELETE: a row revived meanwhile (admin retry) stays.
                pruned += tasks.filter(
                    id__in=ids, state__in=states, finished_at__lt=cutoff
                ).delete()[0]
                if len(ids) < self.limit:
                    break
        if pruned:
            from ..deferred import prune_payloads

            # Large deferred calls live beside their tasks: they go with them.
            payloads = prune_payloads()
            logger.info("event=pruned tasks=%s deferred_payloads=%s", pruned, payloads)
        return pruned


def default_sweeps(alias: str) -> list[Sweep]:
    """Return the sweeps a worker runs, with their intervals from the settings."""
    return [
        Rescuer(alias, taskqueue_settings.RESCUE_INTERVAL_SECONDS),
        Pruner(alias, taskqueue_settings.PRUNE_INTERVAL_SECONDS),
    ]
