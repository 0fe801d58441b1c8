"""The success batcher: successful attempts written together, one statement per batch.

Successes are the bulk of a busy queue's writes, and each single-row UPDATE is a commit of its
own. Batched, a worker that dies before the flush loses only the record of the success: the
tasks run again when their leases expire, which at-least-once delivery allows. Failures are
written at once (their retry time and error history are per task). A success waits at most
`max_wait_seconds`, so a slow attempt never holds the others past their claim's lease.

With `write_behind`, the flushed successes go to a thread of the batcher's own when the worker
starts its next attempt (`hand_over`); the thread writes them on its own database connection
while the worker runs attempts, so the worker no longer waits for the database to write them.
One batch is written at a time (a hand-over waits until the one before it is written). Each
success is reported in the worker's own threads once written: by the next flush, or by
`settle()`, which the worker calls before it waits for work and when it stops.
"""

from __future__ import annotations

import functools
import logging
import queue as queue_module
import threading
from collections.abc import Callable
from typing import Any

from django.db import connections

from .. import clock
from ..db.rows import ClaimedTask
from . import outcome as outcomes
from .delivery import Outcome

logger = logging.getLogger("django_taskqueue")

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
        write_behind: Callable[[Callable[[], set[int]]], set[int]] | None = None,
    ) -> None:
        self.alias = alias
        self.worker_id = worker_id
        #: Called with (task, outcome, recorded, signal arguments) for each written success.
        self.report = report
        self.max_wait_seconds = max_wait_seconds
        #: Runs a write with the worker's retries on database errors, in the writer thread;
        #: None: `flush()` writes in the calling thread.
        self.write_behind = write_behind
        self._lock = threading.Lock()
        self._pending: list[Pending] = []
        self._since = 0.0
        self._batches: queue_module.SimpleQueue[list[Pending] | None] = queue_module.SimpleQueue()
        #: Flushed successes not yet handed to the writer thread (`hand_over`).
        self._staged: list[Pending] = []
        #: Held from a batch's hand-over until it is written.
        self._writing = threading.Lock()
        #: Batches written by the writer thread, with the ids recorded, not reported yet.
        self._written: queue_module.SimpleQueue[tuple[list[Pending], set[int]]] = (
            queue_module.SimpleQueue()
        )
        self._writer: threading.Thread | None = None

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
        """Write the held successes, or hand them to the writer thread (`write_behind`).

        On a database error a flush that writes keeps them for the next flush; the writer
        thread retries its batch itself. A flush also reports the batches the writer thread
        has written since the last one.
        """
        with self._lock:
            pending, self._pending = self._pending, []
        if self.write_behind is None:
            if pending:
                self._write_now(pending)
            return
        self._report_written()
        if pending:
            with self._lock:
                self._staged += pending

    def hand_over(self) -> None:
        """Hand the flushed successes to the writer thread (`write_behind`).

        The worker calls it as an attempt starts: the write then runs while the worker runs
        attempts, not while it waits for its next claim.
        """
        if not self._staged:
            return
        self._writing.acquire()  # released by the writer once the batch before is written
        with self._lock:
            staged, self._staged = self._staged, []
        if not staged:
            self._writing.release()
            return
        if self._writer is None:
            self._writer = threading.Thread(
                target=self._writer_main, name="taskworker-successes", daemon=True
            )
            self._writer.start()
        self._batches.put(staged)

    def settle(self) -> None:
        """Flush, wait until every success handed to the writer thread is written, and report
        them: what a worker does before it waits or stops."""
        self.flush()
        if self.write_behind is None:
            return
        self.hand_over()
        if self._writer is None:
            return
        with self._writing:
            pass
        self._report_written()

    def close(self) -> None:
        """Settle, then end the writer thread (a later flush starts another)."""
        self.settle()
        writer, self._writer = self._writer, None
        if writer is not None:
            self._batches.put(None)
            writer.join()

    def _write_now(self, pending: list[Pending]) -> None:
        try:
            recorded = self._record(pending)
        except BaseException:
            with self._lock:  # kept for the next flush, after the worker reconnects
                self._pending[:0] = pending
            raise
        self._report(pending, recorded)

    def _record(self, pending: list[Pending]) -> set[int]:
        done = [(task.id, task.leased_at, result.status_code) for task, result, _ in pending]
        return outcomes.record_successes(self.alias, self.worker_id, done, now=clock.now())

    def _report(self, pending: list[Pending], recorded: set[int]) -> None:
        for task, result, common in pending:
            self.report(task, result, task.id in recorded, common)

    def _report_written(self) -> None:
        """Report, in the calling thread, the batches the writer thread has written."""
        while True:
            try:
                pending, recorded = self._written.get_nowait()
            except queue_module.Empty:
                return
            self._report(pending, recorded)

    def _writer_main(self) -> None:
        # Only the write happens here, most of it waiting for the database: the reports (the
        # log lines, the signals and their receivers) stay with the worker's threads.
        write_behind = self.write_behind
        assert write_behind is not None
        try:
            while (pending := self._batches.get()) is not None:
                try:
                    recorded = write_behind(functools.partial(self._record, pending))
                except Exception:
                    # Not a database error (write_behind retries those): kept for the next
                    # hand-over, as a flush that writes keeps them for the next flush.
                    logger.exception("event=success_write_failed worker=%s", self.worker_id)
                    with self._lock:
                        self._staged[:0] = pending
                else:
                    self._written.put((pending, recorded))
                finally:
                    self._writing.release()
        finally:
            # This thread's connections: Django keeps one per thread and alias.
            connections.close_all()
