"""The push claim: QUEUED -> RUNNING within a queue's token bucket, as verbs of the task store.

A claim is the only place where push tasks move from QUEUED to RUNNING. Claims of one queue are
serialized on its `QueueState` row, so the bucket level and the running count are never read by
two claims at once; claims of other queues do not wait. A vendor that can do all of it in one
statement says so (`features.can_claim_in_one_statement`) and implements
`claim_in_one_statement`.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.db.models.functions import Coalesce

from .. import ratelimit
from ..models import QueueState, TaskRecord, TaskState
from .features import BaseFeatures
from .rows import CLAIM_COLUMNS, Bucket, ClaimedTask, ClaimResult, OneStatementClaim


class ClaimVerbs:
    """The claim verbs of `TaskStore`, which provides `alias`, `features` and `tasks()`."""

    alias: str
    features: type[BaseFeatures]

    def tasks(self) -> QuerySet[TaskRecord]:
        raise NotImplementedError

    def lock_for_claim(self) -> None:
        """Make the following claim or lease exclusive where rows cannot be locked one by one."""
        raise NotImplementedError("a store without row locks must say how it locks")

    # -- claim (push) ---------------------------------------------------------------------

    def ensure_queue_state(self, queue_name: str) -> None:
        """Create the queue's `QueueState` row if it is missing (outside the claim's hot path)."""
        QueueState.objects.using(self.alias).get_or_create(name=queue_name)

    def claim(
        self,
        queue_name: str,
        *,
        now: datetime.datetime,
        worker_id: str,
        max_tasks: int,
        lease_until: datetime.datetime,
        bucket: Bucket | None,
    ) -> ClaimResult:
        """Claim up to `max_tasks` due push tasks: QUEUED -> RUNNING, leased until `lease_until`.

        Claims of one queue are serialized on its `QueueState` row: the token bucket (`bucket`;
        None ignores the limits) is refilled, spent and written back under that lock, so two
        claims never spend the same tokens. A paused queue claims nothing; a queue without a
        state row gets one and claims nothing this time.
        """
        # A concurrency cap needs the transaction: its running count must be read after the
        # queue lock is taken, and a single statement reads everything from the snapshot it
        # started with.
        if self.features.can_claim_in_one_statement and (
            bucket is None or bucket.max_concurrent is None
        ):
            fused = self.claim_in_one_statement(
                queue_name,
                now=now,
                worker_id=worker_id,
                max_tasks=max_tasks,
                lease_until=lease_until,
                bucket=(bucket.rate, bucket.size) if bucket is not None else None,
                columns=CLAIM_COLUMNS,
            )
            return self._fused_result(queue_name, fused, now, worker_id, max_tasks, lease_until)
        return self._claim_in_transaction(
            queue_name,
            now=now,
            worker_id=worker_id,
            max_tasks=max_tasks,
            lease_until=lease_until,
            bucket=bucket,
        )

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
        """Claim due push tasks in one statement (`features.can_claim_in_one_statement`).

        The statement does what `_claim_in_transaction` does: lock the queue's state row,
        refill its token bucket (`bucket` is `(rate, bucket_size)`; None ignores the bucket),
        take up to min(tokens, `max_tasks`) due tasks, mark them RUNNING and write the bucket
        back.
        """
        raise NotImplementedError("this store cannot claim in one statement")

    def _claim_in_transaction(
        self,
        queue_name: str,
        *,
        now: datetime.datetime,
        worker_id: str,
        max_tasks: int,
        lease_until: datetime.datetime,
        bucket: Bucket | None,
    ) -> ClaimResult:
        with transaction.atomic(using=self.alias):
            # SQLite has no row locks: lock_for_claim() takes the database's write lock first,
            # so the read-then-write below cannot fail on a lock upgrade.
            if not self.features.has_row_locks:
                self.lock_for_claim()
            # Lock the queue's state row: claims of one queue run one at a time across all
            # workers, so the bucket level and the running count cannot be read by two claims
            # at once (each would spend the same tokens). Claims of other queues do not wait.
            state = (
                QueueState.objects.using(self.alias)
                .select_for_update()
                .filter(name=queue_name)
                .first()
            )
            if state is not None:
                if state.paused:
                    return ClaimResult([])
                rows, wait_seconds, throttled = self._claim_locked(
                    state, queue_name, now, worker_id, max_tasks, lease_until, bucket
                )
        if state is None:
            # The row is created once, outside the claim's transaction; the next claim uses it.
            self.ensure_queue_state(queue_name)
            return ClaimResult([], wait_seconds=0.0, throttled=True)
        claimed = [ClaimedTask.from_row(row, worker_id, now, lease_until) for row in rows]
        return ClaimResult(claimed, wait_seconds=wait_seconds, throttled=throttled)

    def _claim_locked(
        self,
        state: QueueState,
        queue_name: str,
        now: datetime.datetime,
        worker_id: str,
        max_tasks: int,
        lease_until: datetime.datetime,
        bucket: Bucket | None,
    ) -> tuple[list[dict[str, Any]], float | None, bool]:
        tasks = self.tasks()
        due = tasks.filter(queue_name=queue_name, state=TaskState.QUEUED, eta__lte=now)
        wanted = max_tasks
        tokens = 0.0
        if bucket is not None:
            tokens = ratelimit.refill(state.tokens, state.tokens_at, now, bucket.rate, bucket.size)
            wanted = min(wanted, ratelimit.available(tokens))
            if bucket.max_concurrent is not None:
                # Read under the queue lock: every RUNNING row of this queue was committed by
                # a claim that held it, so the count cannot miss a concurrent claim.
                running = tasks.filter(queue_name=queue_name, state=TaskState.RUNNING).count()
                wanted = min(wanted, bucket.max_concurrent - running)
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
        # Held back by the limits (not by a lack of due tasks): the caller waits for a token
        # or a free slot instead of polling.
        throttled = len(rows) == wanted < max_tasks and due.exists()
        wait_seconds = None
        if bucket is not None:
            tokens -= len(rows)
            if throttled:
                wait_seconds = ratelimit.seconds_until_token(tokens, bucket.rate)
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
        self,
        queue_name: str,
        fused: OneStatementClaim,
        now: datetime.datetime,
        worker_id: str,
        max_tasks: int,
        lease_until: datetime.datetime,
    ) -> ClaimResult:
        if not fused.found:
            self.ensure_queue_state(queue_name)
            return ClaimResult([], wait_seconds=0.0, throttled=True)
        if fused.paused:
            return ClaimResult([])
        rows = fused.rows
        throttled = (
            len(rows) == fused.wanted < max_tasks
            and self.tasks()
            .filter(queue_name=queue_name, state=TaskState.QUEUED, eta__lte=now)
            .exists()
        )
        wait_seconds = None
        if throttled and fused.tokens is not None and fused.rate is not None:
            wait_seconds = ratelimit.seconds_until_token(fused.tokens, fused.rate)
        claimed = [ClaimedTask.from_row(row, worker_id, now, lease_until) for row in rows]
        return ClaimResult(claimed, wait_seconds=wait_seconds, throttled=throttled)

    def has_due_tasks(self, queue_names: list[str], now: datetime.datetime) -> bool:
        """Return whether any of the queues has a QUEUED task due at `now`."""
        return (
            self.tasks()
            .filter(queue_name__in=queue_names, state=TaskState.QUEUED, eta__lte=now)
            .exists()
        )
