"""Profile the hot paths with pyinstrument: add, lease + delete, a push worker's drain and a
Django Tasks worker's drain.

    bench/.venv/bin/python -m bench.profile --db postgresql [--n 2000]

Writes bench/results/profile-<db>-<path>.txt (pyinstrument's call tree) and prints, for each
path, the wall time, the CPU time of this process and the SQL statements per task: a path whose
CPU time is far below its wall time waits on the database.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from bench import common

RESULTS = common.BENCH_DIR / "results"


def _profiled(name: str, db: str, fn, tasks: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    cpu = time.process_time()
    with CaptureQueriesContext(connection) as queries:
        profiler.start()
        started = time.perf_counter()
        fn()
        wall = time.perf_counter() - started
        profiler.stop()
    cpu = time.process_time() - cpu
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"profile-{db}-{name}.txt"
    path.write_text(profiler.output_text(unicode=True, color=False, show_all=False))
    result = {
        "path": name,
        "tasks": tasks,
        "tasks_per_s": tasks / wall,
        "cpu_share": cpu / wall,
        "statements_per_task": len(queries.captured_queries) / tasks,
        "cpu_us_per_task": cpu / tasks * 1e6,
        "profile": str(path.relative_to(common.ROOT)),
    }
    print(
        f"{name:14} {result['tasks_per_s']:>10,.0f} tasks/s  CPU {result['cpu_share']:.0%} of "
        f"wall, {result['cpu_us_per_task']:,.0f} µs CPU/task, "
        f"{result['statements_per_task']:.3f} statements/task  -> {path.name}"
    )
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="postgresql")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--push", type=int, default=200, help="tasks of the worker drain")
    args = parser.parse_args(argv)
    common.setup(args.db)
    logging.getLogger("django_taskqueue").setLevel(logging.WARNING)
    from django_taskqueue.taskqueue import Queue, Task

    pull = Queue(common.PULL_QUEUE)
    n = args.n
    results = []

    common.reset_tables()
    pull.add(Task(b"x" * 16, method="PULL"))

    def add_one():
        for _ in range(n):
            pull.add(Task(b"x" * 16, method="PULL"))

    results.append(_profiled("add-one", args.db, add_one, n))

    common.reset_tables()

    def add_batch():
        for _ in range(n * 5 // 100):
            pull.add([Task(b"x" * 16, method="PULL") for _ in range(100)])

    results.append(_profiled("add-batch", args.db, add_batch, n * 5 // 100 * 100))

    common.reset_tables()
    common.seed_pull(n * 5)
    common.analyze()
    leased = []

    def lease():
        while True:
            tasks = pull.lease_tasks(300, 1000)
            if not tasks:
                break
            leased.append(tasks)

    results.append(_profiled("lease", args.db, lease, n * 5))

    def delete():
        for tasks in leased:
            pull.delete_tasks(tasks)

    results.append(_profiled("delete", args.db, delete, n * 5))

    from django_taskqueue.dispatch.worker import Worker

    common.reset_tables()
    common.seed_push(args.push)
    common.analyze()
    worker = Worker([common.PUSH_QUEUE], burst=True, concurrency=1)
    results.append(_profiled("push-worker", args.db, worker.run, args.push))

    from bench.tasks import noop_task

    common.reset_tables()
    for _ in range(args.push):
        noop_task.enqueue()
    common.analyze()
    worker = Worker([common.PUSH_QUEUE], burst=True, concurrency=1)
    results.append(_profiled("djtasks-worker", args.db, worker.run, args.push))
    common.emit({"profiles": results})


if __name__ == "__main__":
    sys.exit(main())
