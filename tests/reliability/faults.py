"""What the worker-loss fault tests share: a worker process, its record, and a proxy to cut."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..conftest import REPO_ROOT

#: Short heartbeats, so the tests that need no default figures find a dead worker in seconds.
FAST_HEARTBEAT = {
    "HEARTBEAT_INTERVAL_SECONDS": 0.2,
    "WORKER_TIMEOUT_SECONDS": 1,
    "RESCUE_INTERVAL_SECONDS": 0.2,
    "POLL_INTERVAL_SECONDS": 0.1,
}


def start_worker(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start `runtaskworker` with `args`, its output going to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "django", "runtaskworker", *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def entries(record: Path, event: str | None = None) -> list[dict[str, Any]]:
    """The handlers' record lines, of one `event` or all."""
    if not record.exists():
        return []
    rows = [json.loads(line) for line in record.read_text().splitlines() if line]
    return [r for r in rows if event is None or r.get("event") == event]


def task_name(entry: dict[str, Any]) -> str:
    return str(entry["headers"]["X-Appengine-Taskname"])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `predicate` until true; return the seconds it took, or fail after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


class CuttableProxy:
    """A TCP proxy to the database that a test cuts (every connection dropped, new ones refused)
    and restores, so that an outage hits only the worker behind it."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    (b if source is a else a).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for s in (a, b):
                _drop(s)

    def cut(self) -> None:
        """Drop every connection and refuse new ones until `restore()`."""
        self.up = False
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            _drop(s)

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.listener.close()


def _drop(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()
