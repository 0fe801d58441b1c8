"""The listener: wakes idle workers when an add commits, where the task store can say so.

`TaskStore.listen` runs in this service's thread: on PostgreSQL it LISTENs on a connection of
its own; on MariaDB, MySQL and SQLite it watches the newest task id with a tiny read every
50 ms (`db/watch.py`). A store without `features.can_notify_workers` leaves the service idle
and its workers find new tasks by polling.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..db import store


class Listener:
    """Call `wake()` on each committed add, from a thread, until `stopping()` is true."""

    def __init__(self, alias: str, wake: Callable[[], None], stopping: Callable[[], bool]) -> None:
        self.alias = alias
        self.wake = wake
        self.stopping = stopping
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return store(self.alias).features.can_notify_workers

    def start(self) -> None:
        if not self.enabled:
            return
        self._thread = threading.Thread(target=self._run, name="taskworker-listen", daemon=True)
        self._thread.start()

    def join(self, timeout: float = 5) -> None:
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def _run(self) -> None:
        store(self.alias).listen(self.wake, self.stopping)
