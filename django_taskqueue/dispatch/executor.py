"""The executor: runs claimed tasks' attempts, inline or on a small pool of threads.

With `concurrency` 1 an attempt runs in the calling thread, which is what `run_tasks()` needs
inside a test's transaction. Above 1, each thread has its own database connections (Django's
connections are per thread), closed when the thread ends.
"""

from __future__ import annotations

import logging
import queue as queue_module
import threading
from collections.abc import Callable

from django.db import connections

from ..db.rows import ClaimedTask
from ..queues import QueueConfig

logger = logging.getLogger("django_taskqueue")

Job = tuple[ClaimedTask, QueueConfig]


class Executor:
    """Run `attempt(task, config)` for each submitted task, `concurrency` at a time."""

    def __init__(
        self,
        concurrency: int,
        attempt: Callable[[ClaimedTask, QueueConfig], None],
        on_done: Callable[[], None],
    ) -> None:
        self.concurrency = concurrency
        self.attempt = attempt
        #: Called after each attempt in a thread (the claim loop may have a free slot again).
        self.on_done = on_done
        self._lock = threading.Lock()
        self._in_flight = 0
        self._jobs: queue_module.Queue[Job | None] = queue_module.Queue()
        self._threads: list[threading.Thread] = []

    @property
    def in_flight(self) -> int:
        """Attempts submitted and not finished."""
        return self._in_flight

    def free_slots(self) -> int:
        with self._lock:
            return max(0, self.concurrency - self._in_flight)

    def start(self) -> None:
        if self.concurrency == 1:
            return
        for i in range(self.concurrency):
            thread = threading.Thread(target=self._thread_main, name=f"taskworker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def submit(self, task: ClaimedTask, config: QueueConfig) -> None:
        with self._lock:
            self._in_flight += 1
        if self.concurrency == 1:
            try:
                self.attempt(task, config)
            finally:
                with self._lock:
                    self._in_flight -= 1
        else:
            self._jobs.put((task, config))

    def shutdown(self) -> None:
        """Let the submitted attempts finish: each thread takes one sentinel after its work."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def _thread_main(self) -> None:
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                task, config = job
                try:
                    self.attempt(task, config)
                except Exception:
                    logger.exception("event=attempt_crashed task=%s", task.name)
                finally:
                    with self._lock:
                        self._in_flight -= 1
                    self.on_done()
        finally:
            # This thread's connections: Django keeps one per thread and alias.
            connections.close_all()
