"""Client-side cost of each hot path: CPU µs and statements per task, and wall time.

    bench/.venv/bin/python -m bench.hotpaths --db postgresql

CPU time of this process is steady on a shared machine where wall time is not, so this is the
figure to compare before and after a change to django_taskqueue/db/.
"""

from __future__ import annotations

import argparse
import sys
import time

from bench import common


def measure(fn, tasks: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        cpu, wall = time.process_time(), time.perf_counter()
        fn()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "cpu_us": cpu / tasks * 1e6,
        "wall_us": wall / tasks * 1e6,
        "statements": len(queries.captured_queries) / tasks,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="postgresql")
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args(argv)
    common.setup(args.db)
    from django_taskqueue.taskqueue import Queue, Task

    queue, n = Queue(common.PULL_QUEUE), args.n
    out = {}
    common.reset_tables()
    queue.add(Task(b"x" * 16, method="PULL"))

    def add_one():
        for _ in range(n):
            queue.add(Task(b"x" * 16, method="PULL"))

    out["add one"] = measure(add_one, n)

    def add_batch():
        for _ in range(n // 20):
            queue.add([Task(b"x" * 16, method="PULL") for _ in range(100)])

    out["add 100"] = measure(add_batch, n // 20 * 100)
    common.reset_tables()
    common.seed_pull(n * 10)
    common.analyze()
    leased = []

    def lease():
        while tasks := queue.lease_tasks(300, 1000):
            leased.append(tasks)

    out["lease 1000"] = measure(lease, n * 10)

    def delete():
        for tasks in leased:
            queue.delete_tasks(tasks)

    out["delete 1000"] = measure(delete, n * 10)
    for name, m in out.items():
        print(
            f"{args.db:10} {name:12} CPU {m['cpu_us']:7.1f} µs/task  wall {m['wall_us']:7.1f} "
            f"µs/task  {m['statements']:.4f} statements/task"
        )
    common.emit(out)


if __name__ == "__main__":
    sys.exit(main())
