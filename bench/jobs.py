"""The no-op job of every scenario, and `mark()`, the probe each job calls when it starts.

`mark()` appends the wall-clock time as one fixed-width line to the file named by
BENCH_MARK_FILE (O_APPEND, one write: a few microseconds, no network). The driver reads the
file: the number of lines is the number of jobs that ran, the first and last times give the
drain rate, and a job added at a known time gives the idle latency.
"""

from __future__ import annotations

import os
import time

MARK_BYTES = 18  # "%017.6f\n"

_fd: int | None = None
_pid: int | None = None


def mark() -> None:
    global _fd, _pid
    path = os.environ.get("BENCH_MARK_FILE")
    if not path:
        return
    if _fd is None or _pid != os.getpid():
        # Forking workers (Celery prefork, RQ) inherit the module: each process opens its own.
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _pid = os.getpid()
    os.write(_fd, b"%017.6f\n" % time.time())


def read_marks(path: str) -> list[float]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    return [float(line) for line in data.split(b"\n") if line]


def count_marks(path: str) -> int:
    try:
        return os.stat(path).st_size // MARK_BYTES
    except FileNotFoundError:
        return 0


def noop_view(request):
    """The push task handler: marks and answers 200."""
    from django.http import HttpResponse

    mark()
    return HttpResponse(b"")


noop_view.csrf_exempt = True  # task requests carry no CSRF token
