"""The heartbeat: a worker announces itself, so that its death is found in seconds.

A thread of its own, with its own database connection (a long attempt on the main thread never
delays a beat), writes the worker's `WorkerHeartbeat` row every `HEARTBEAT_INTERVAL_SECONDS`:
one UPDATE per interval, never one per task, carrying the ids of the tasks whose attempt has
started and is not yet written. The rescuer (`sweeps.Rescuer`) takes a worker silent for
`WORKER_TIMEOUT_SECONDS` for dead, charges an attempt to those tasks only, and gives the other
tasks it held back uncharged. The row is deleted when the worker exits cleanly.

A worker built inside a transaction (a test's) announces nothing: its claims are invisible to
other processes, and a second connection would wait on the transaction's locks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import connections

from .. import clock
from ..db import store
from .dbretry import DB_ERRORS, reset_connection

logger = logging.getLogger("django_taskqueue")


class Heartbeat:
    """Write the worker's row every `interval_seconds` until `stop()`; delete it then."""

    def __init__(
        self,
        alias: str,
        worker_id: str,
        interval_seconds: float,
        started: Callable[[], list[int]],
        on_error: Callable[[], None],
    ) -> None:
        self.alias = alias
        self.worker_id = worker_id
        self.interval_seconds = interval_seconds
        #: The ids of the tasks whose attempt has started and whose outcome is not written.
        self.started = started
        #: Called when a beat fails (the database is away).
        self.on_error = on_error
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, wait_seconds: float = 5.0) -> None:
        """Start beating; wait (a little) for the first beat, so a claim is never unannounced."""
        self._thread = threading.Thread(target=self._run, name="taskworker-beat", daemon=True)
        self._thread.start()
        self._first.wait(wait_seconds)

    def stop(self, forget: bool = True) -> None:
        """Stop beating; with `forget`, delete the row (a clean exit: nothing left to rescue)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=10)
        self._thread = None
        if forget:
            try:
                store(self.alias).forget_worker(self.worker_id)
            except DB_ERRORS:
                # The row stays; a rescuer deletes it once it is stale, finding nothing held.
                logger.warning("event=heartbeat_forget_failed worker=%s", self.worker_id)

    def _run(self) -> None:
        failures = 0
        try:
            while True:
                try:
                    store(self.alias).beat(self.worker_id, clock.now(), sorted(self.started()))
                    self._first.set()
                    failures = 0
                except DB_ERRORS:
                    failures += 1
                    self.on_error()
                    logger.warning(
                        "event=heartbeat_failed worker=%s failures=%s",
                        self.worker_id,
                        failures,
                        exc_info=failures == 1,
                    )
                    reset_connection(self.alias)
                # After a failure, try again soon: the first beat back must come before the
                # other workers' rescuers take this worker for dead.
                pause = self.interval_seconds if not failures else min(1.0, self.interval_seconds)
                if self._stop.wait(pause):
                    return
        finally:
            connections[self.alias].close()
