"""The success batcher: successful attempts written together, one statement per batch.

Successes are the bulk of a busy queue's writes, and each single-row UPDATE is a commit of its
own. Batched, a worker that dies before the flush loses only the record of the success: the
tasks run again when their leases expire, which at-least-once delivery allows. Failures are
written at once (their retry time and error history are per task). A success waits at most
`max_wait_seconds`, so a slow attempt never holds the others past their claim's lease.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .. import clock
from ..db.rows import ClaimedTask
from . import outcome as outcomes
from .delivery import Outcome

#: (task, its attempt's outcome, the attempt's signal arguments)
Pending = tuple[ClaimedTask, Outcome, dict[str, Any]]


class SuccessBatcher:
    """Hold successful attempts until `flush()` writes them; report each once written."""

    def __init__(
        self,
        alias: str,
        worker_id: str,
        report: Callable[[ClaimedTask, Outcome, bool, dict[str, Any]], None],
        max_wait_seconds: float = 1.0,
    ) -> None:
        self.alias = alias
        self.worker_id = worker_id
        #: Called with (task, outcome, recorded, signal arguments) for each written success.
        self.report = report
        self.max_wait_seconds = max_wait_seconds
        self._lock = threading.Lock()
        self._pending: list[Pending] = []
        self._since = 0.0

    def add(self, task: ClaimedTask, result: Outcome, common: dict[str, Any]) -> None:
        """Hold one successful attempt until the next flush."""
        with self._lock:
            if not self._pending:
                self._since = clock.monotonic()
            self._pending.append((task, result, common))

    def full(self, size: int) -> bool:
        """Whether `size` successes are held, or the oldest has waited too long."""
        return len(self._pending) >= size or self.overdue()

    def overdue(self) -> bool:
        """Whether the oldest held success has waited longer than `max_wait_seconds`."""
        return bool(self._pending) and clock.monotonic() - self._since > self.max_wait_seconds

    def flush(self) -> None:
        """Write the held successes; on a database error keep them for the next flush."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        done = [(task.id, task.leased_at, result.status_code) for task, result, _ in pending]
        try:
            recorded = outcomes.record_successes(self.alias, self.worker_id, done, now=clock.now())
        except BaseException:
            with self._lock:  # kept for the next flush, after the worker reconnects
                self._pending[:0] = pending
            raise
        for task, result, common in pending:
            self.report(task, result, task.id in recorded, common)
