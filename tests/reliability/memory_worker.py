"""A worker process that reports its memory while it runs many in-process attempts.

Run as `python -m tests.reliability.memory_worker TASKS SAMPLE_EVERY` with the test database in
DATABASE_URL: it adds TASKS push tasks to the queue `fast`, runs one `Worker` until it has
claimed them all, and prints one JSON line per SAMPLE_EVERY attempts with the attempts so far,
the bytes tracemalloc traces and the process's resident set size.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tracemalloc
from typing import Any


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(tasks: int, sample_every: int, concurrency: int) -> None:
    import django

    django.setup()
    from django_taskqueue import signals
    from django_taskqueue.dispatch.worker import Worker
    from django_taskqueue.taskqueue import Queue, Task

    queue = Queue("fast")
    for start in range(0, tasks, 100):
        queue.add([Task(method="GET", url="/echo") for _ in range(min(100, tasks - start))])

    attempts = 0

    def sample(**kwargs: Any) -> None:
        nonlocal attempts
        attempts += 1
        if attempts % sample_every == 0:
            gc.collect()
            traced = tracemalloc.get_traced_memory()[0]
            print(json.dumps({"attempts": attempts, "traced": traced, "rss": _rss_bytes()}))
            sys.stdout.flush()

    signals.task_attempt_finished.connect(sample, weak=False)
    tracemalloc.start()
    Worker(["fast"], concurrency=concurrency, rate_limits=False, max_tasks=tasks).run()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 1)
