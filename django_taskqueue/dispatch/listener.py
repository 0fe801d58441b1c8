"""The listener: wakes idle workers when an add commits, where the task store can say so.

On PostgreSQL the worker's loop waits on the LISTEN connection's socket itself
(`TaskStore.notify_channel`), together with its `Wakeup`: a NOTIFY ends the wait in the thread
that claims, with no thread in between. On MariaDB, MySQL and SQLite a thread of this service
watches the newest task id with a tiny read every 50 ms on SQLite, 70 ms on MariaDB and MySQL
(`TaskStore.listen`, `db/watch.py`), and sets the `Wakeup`. A store without
`features.can_notify_workers` leaves the service idle and its workers find new tasks by polling.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

from ..db import store
from ..db.sockets import wait_readable


class Wakeup:
    """An event the worker's loop sleeps on, which a poll can wait on with other sockets.

    Like `threading.Event` (`set()` from any thread, `wait()`, `clear()`), but while set its
    `fileno()` is readable (one byte in a socket pair), so the loop can wait for it and for a
    NOTIFY in one poll. The socket pair is made on the first `fileno()` or `wait()`: a worker
    that never sleeps (a test's burst) makes none. `close()` closes it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = False
        self._pair: tuple[socket.socket, socket.socket] | None = None

    def fileno(self) -> int:
        with self._lock:
            if self._pair is None:
                reader, writer = socket.socketpair()
                reader.setblocking(False)
                writer.setblocking(False)
                self._pair = reader, writer
                if self._set:
                    writer.send(b"\0")
            return self._pair[0].fileno()

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        with self._lock:
            if self._set:
                return
            self._set = True
            if self._pair is not None:
                self._pair[1].send(b"\0")  # one byte while set: the buffer never fills

    def clear(self) -> None:
        with self._lock:
            if not self._set:
                return
            self._set = False
            if self._pair is not None:
                self._pair[0].recv(1)

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for `set()`; return whether it is set."""
        if not self._set:
            wait_readable([self.fileno()], timeout)
        return self._set

    def close(self) -> None:
        with self._lock:
            pair, self._pair = self._pair, None
        if pair is not None:
            pair[0].close()
            pair[1].close()


class Listener:
    """Wake the worker's loop on each committed add, until `stopping()` is true.

    `wakeup.set()` is what a watching thread calls; `wait(timeout)` is where the loop sleeps.
    """

    def __init__(self, alias: str, wakeup: Wakeup, stopping: Callable[[], bool]) -> None:
        self.alias = alias
        self.wakeup = wakeup
        self.stopping = stopping
        self._thread: threading.Thread | None = None
        #: The LISTEN connection the loop waits on (PostgreSQL), once started.
        self._channel: Any = None

    @property
    def enabled(self) -> bool:
        return store(self.alias).features.can_notify_workers

    def start(self) -> None:
        if not self.enabled:
            return
        tasks = store(self.alias)
        if tasks.features.can_push_notifications:
            self._channel = tasks.notify_channel()  # connects on the first wait
            return
        self._thread = threading.Thread(target=self._run, name="taskworker-listen", daemon=True)
        self._thread.start()

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for `wakeup` or a NOTIFY; return whether woken."""
        if self.wakeup.is_set():
            return True
        if self._channel is None:
            return self.wakeup.wait(timeout)
        return self._channel.wait(timeout, also=self.wakeup.fileno()) or self.wakeup.is_set()

    def join(self, timeout: float = 5) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def _run(self) -> None:
        store(self.alias).listen(self.wakeup.set, self.stopping)
