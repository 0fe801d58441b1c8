"""The scenarios of django-taskqueue itself; one run of one scenario per process.

    python -m bench.scenarios NAME --db postgresql --n 1000 [--procs 4] [--keep-below ID]

prints `RESULT {json}` as its last line: `rate` in tasks/s, or latency percentiles in ms.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

from bench import common
from bench.common import PULL_QUEUE, PUSH_QUEUE

SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__.replace("_", "-")] = fn
    return fn


# -- add -------------------------------------------------------------------------------------


def _add_one(n: int, method: str) -> dict:
    from django_taskqueue.taskqueue import Queue, Task

    if method == "PULL":
        queue = Queue(PULL_QUEUE)

        def make():
            return Task(b"x" * 16, method="PULL")
    else:
        queue = Queue(PUSH_QUEUE)

        def make():
            return Task(url="/bench/noop")

    for _ in range(20):  # warm-up: connection, caches
        queue.add(make())
    started = time.perf_counter()
    for _ in range(n):
        queue.add(make())  # autocommit: one transaction per task
    elapsed = time.perf_counter() - started
    return {"rate": n / elapsed, "n": n}


@scenario
def add_one_push(args) -> dict:
    """`add` of one push task per transaction (on PostgreSQL its NOTIFY rides along)."""
    common.reset_tables(args.keep_below)
    return _add_one(args.n, "POST")


@scenario
def add_one_pull(args) -> dict:
    """`add` of one pull task per transaction: the row the floor inserts."""
    common.reset_tables(args.keep_below)
    return _add_one(args.n, "PULL")


@scenario
def add_batch(args) -> dict:
    """`add` of 100 pull tasks per call (one transaction each)."""
    from django_taskqueue.taskqueue import Queue, Task

    common.reset_tables(args.keep_below)
    queue = Queue(PULL_QUEUE)
    queue.add([Task(b"x" * 16, method="PULL") for _ in range(100)])  # warm-up
    batches = max(1, args.n // 100)
    started = time.perf_counter()
    for _ in range(batches):
        queue.add([Task(b"x" * 16, method="PULL") for _ in range(100)])
    elapsed = time.perf_counter() - started
    return {"rate": batches * 100 / elapsed, "n": batches * 100}


@scenario
def add_batch_push(args) -> dict:
    """`add` of 100 push tasks per call (one transaction and one NOTIFY each)."""
    from django_taskqueue.taskqueue import Queue, Task

    common.reset_tables(args.keep_below)
    queue = Queue(PUSH_QUEUE)
    queue.add([Task(url="/bench/noop") for _ in range(100)])
    batches = max(1, args.n // 100)
    started = time.perf_counter()
    for _ in range(batches):
        queue.add([Task(url="/bench/noop") for _ in range(100)])
    elapsed = time.perf_counter() - started
    return {"rate": batches * 100 / elapsed, "n": batches * 100}


# -- pull ------------------------------------------------------------------------------------


@scenario
def pull(args) -> dict:
    """`lease_tasks(300, 1000)` + `delete_tasks` of those, by `--procs` consumer processes."""
    common.reset_tables(args.keep_below)
    common.seed_pull(args.n)
    common.analyze()
    start_at = time.time() + 1.5 + 0.3 * args.procs  # every consumer starts at this instant
    procs = [
        subprocess.Popen(
            [
                common.PYTHON,
                "-m",
                "bench.scenarios",
                "pull-consumer",
                "--db",
                args.db,
                "--start-at",
                repr(start_at),
            ],
            cwd=common.ROOT,
            env=common.child_env(args.db),
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(args.procs)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=args.timeout)
        line = [x for x in out.splitlines() if x.startswith("RESULT ")][-1]
        results.append(json.loads(line[len("RESULT ") :]))
    count = sum(r["count"] for r in results)
    end = max(r["end"] for r in results)
    start = min(r["start"] for r in results)
    left = common.live_count()
    return {
        "rate": count / (end - start),
        "n": count,
        "procs": args.procs,
        "per_process": [r["count"] for r in results],
        **({"error": f"{left} tasks left"} if left else {}),
    }


@scenario
def pull_consumer(args) -> dict:
    from django.db import connection

    from django_taskqueue.taskqueue import Queue

    queue = Queue(PULL_QUEUE)
    connection.ensure_connection()
    queue.fetch_statistics()  # warm caches before the start
    time.sleep(max(0.0, args.start_at - time.time()))
    start = time.time()
    count = 0
    while True:
        tasks = queue.lease_tasks(300, 1000)
        if not tasks:
            break
        queue.delete_tasks(tasks)
        count += len(tasks)
    return {"count": count, "start": start, "end": time.time()}


# -- push ------------------------------------------------------------------------------------


def worker_command(concurrency: int = 1, burst: bool = True, processes: int = 0) -> list[str]:
    cmd = [common.PYTHON, common.MANAGE, "runtaskworker", "--queue", PUSH_QUEUE]
    cmd += ["--concurrency", str(concurrency)]
    if burst:
        cmd.append("--burst")
    if processes:
        cmd += ["--processes", str(processes)]
    return cmd


def _drain(
    args, n: int, workers: int, label: str, processes: int = 0, apps: str = "taskqueue"
) -> dict:
    from bench.jobs import read_marks

    marks = common.fresh_mark_file(label)
    # The worker runs with the apps of a project that uses it (bench/settings.py, BENCH_APPS).
    env = common.child_env(args.db, BENCH_MARK_FILE=marks, BENCH_APPS=apps)
    log = common.BENCH_DIR / ".data" / f"{label}-{args.db}.log"
    command = worker_command(1, burst=True, processes=processes)
    procs = [common.start(command, env, log) for _ in range(workers)]
    try:
        rss: dict = {}
        seen = common.wait_window(marks, n, args.window, args.timeout, procs, rss)
    finally:
        for proc in procs:
            common.stop(proc)
    times = read_marks(marks)
    os.unlink(marks)
    result = {"rate": common.drain_rate(times), "n": len(times), "workers": workers}
    if rss.get("max_mb"):
        result["rss_mb"] = rss["max_mb"]
    if rss.get("max_pss_mb"):
        result["pss_mb"] = rss["max_pss_mb"]
    if seen < n and not (args.window and seen > 1):
        result["error"] = f"{len(times)} of {n} ran within {args.timeout:.0f} s"
    elif seen < n:
        result["window_seconds"] = args.window  # bounded in time: the rate of the window
    return result


@scenario
def push(args) -> dict:
    """N no-op push tasks drained by `--procs` `runtaskworker --burst` processes."""
    common.reset_tables(args.keep_below)
    common.seed_push(args.n)
    common.analyze()
    return _drain(args, args.n, args.procs, "push")


@scenario
def push_processes(args) -> dict:
    """N no-op push tasks drained by one `runtaskworker --burst --processes P` (P = `--procs`)."""
    common.reset_tables(args.keep_below)
    common.seed_push(args.n)
    common.analyze()
    return {
        **_drain(args, args.n, 1, "push-processes", processes=args.procs),
        "workers": args.procs,
    }


@scenario
def djtasks(args) -> dict:
    """N no-op Django Tasks `@task` calls enqueued to TaskQueueBackend, drained by 1 worker."""
    from django_tasks import task_backends

    from bench.tasks import noop_task

    if type(task_backends["default"]).__name__ != "TaskQueueBackend":
        return {"error": "django_taskqueue.backends.TaskQueueBackend is not available"}
    common.reset_tables(args.keep_below)
    started = time.perf_counter()
    for _ in range(args.n):
        noop_task.enqueue()  # autocommit: one transaction each
    enqueue_rate = args.n / (time.perf_counter() - started)
    common.analyze()
    drained = _drain(args, args.n, args.procs, "djtasks", apps="tasks")
    return {**drained, "enqueue_rate": enqueue_rate}


@scenario
def latency(args) -> dict:
    """Idle worker: time from `add` (committed) to the handler's start, one task at a time."""
    from django_taskqueue.taskqueue import Queue, Task

    common.reset_tables(args.keep_below)
    marks = common.fresh_mark_file("latency")
    env = common.child_env(args.db, BENCH_MARK_FILE=marks, BENCH_APPS="taskqueue")
    log = common.BENCH_DIR / ".data" / f"latency-{args.db}.log"
    queue = Queue(PUSH_QUEUE)
    proc = common.start(worker_command(1, burst=False), env, log)
    try:
        result = common.measure_latency(
            lambda: queue.add(Task(url="/bench/noop")), marks, proc, args.n, args.timeout
        )
    finally:
        common.stop(proc)
    os.unlink(marks)
    return result


@scenario
def seed_history(args) -> dict:
    """Insert `--n` finished rows (the history of the scale runs); report the next id."""
    common.reset_tables()
    started = time.perf_counter()
    keep_below = common.seed_history(args.n)
    return {"keep_below": keep_below, "n": args.n, "seconds": time.perf_counter() - started}


# -- the admin dashboard --------------------------------------------------------------------


def _seed_minute_stats() -> None:
    """A day of statistics for both bench queues, as the workers would have written them."""
    from django_taskqueue.dispatch.minute_stats import HOUR, MINUTE, Counts, _row, upsert

    start = common.now().replace(second=0, microsecond=0)
    for queue in (PUSH_QUEUE, PULL_QUEUE):
        rows = []
        for minutes_ago in range(24 * 60):
            minute = start - datetime.timedelta(minutes=minutes_ago)
            counts = Counts(executed=600, failed=3, retried=12, run_seconds=60.0, max_run_seconds=2)
            rows.append(_row(queue, MINUTE, minute, counts, waiting=minutes_ago % 50, running=4))
        for hours_ago in range(25):
            hour = start.replace(minute=0) - datetime.timedelta(hours=hours_ago)
            counts = Counts(executed=36000, failed=180, retried=720, run_seconds=3600.0)
            rows.append(_row(queue, HOUR, hour, counts))
        for begin in range(0, len(rows), 500):
            upsert("default", rows[begin : begin + 500])


@scenario
def dashboard(args) -> dict:
    """Time the dashboard's figures, the metrics endpoint's and a queue page's (ms per call).

    Over the history below `--keep-below` (the scale runs' 1M rows), or over `--history` rows
    seeded here; with 1,000 waiting tasks and a day of per-minute statistics.
    """
    from django_taskqueue import clock
    from django_taskqueue.dashboard import overview, recent_errors, slowest_tasks
    from django_taskqueue.metrics.exposition import collect, render

    if args.keep_below is None:
        common.reset_tables()
        if args.history:
            common.seed_history(args.history)
    else:
        common.reset_tables(args.keep_below)
    common.seed_push(1000)
    _seed_minute_stats()
    common.analyze()

    def timed(function) -> list[float]:
        function()  # warm-up: connection, caches
        samples = []
        for _ in range(args.n):
            started = time.perf_counter()
            function()
            samples.append((time.perf_counter() - started) * 1000)
        return samples

    def queue_page():
        now = clock.now()
        overview([PUSH_QUEUE], now=now)
        recent_errors(PUSH_QUEUE, now)
        slowest_tasks(PUSH_QUEUE, now)

    page = timed(overview)
    metrics = common.percentiles(timed(lambda: render(collect())))
    queue = common.percentiles(timed(queue_page))
    return {
        **common.percentiles(page),
        "metrics_p50": metrics["p50"],
        "metrics_p99": metrics["p99"],
        "queue_page_p50": queue["p50"],
        "queue_page_p99": queue["p99"],
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name", choices=sorted(SCENARIOS))
    parser.add_argument("--db", default="postgresql")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--procs", type=int, default=1)
    parser.add_argument("--keep-below", type=int, default=None)
    parser.add_argument("--start-at", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--window", type=float, default=0.0, help="drains: seconds at most")
    parser.add_argument("--history", type=int, default=0, help="dashboard: rows to seed")
    args = parser.parse_args(argv)
    common.setup(args.db)
    common.emit(SCENARIOS[args.name](args))


if __name__ == "__main__":
    sys.exit(main())
