"""The peers' scenarios, on the same PostgreSQL server and Redis, with the same no-op job.

    python -m bench.peer_scenarios PEER WHAT --n 1000

PEER: dtdb (django-tasks-db, `db_worker`), procrastinate, celery (Redis broker), rq, rq-simple
(RQ's SimpleWorker, no fork per job). WHAT: enqueue-one, enqueue-batch (100 per call or per
transaction), drain (one worker process at its defaults), latency (idle worker). Workers run
at their defaults; the rate is measured between the first and the last job start (`mark()`),
so no worker's start-up time is counted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from bench import common, databases

CELERY_REDIS_DB = 11
RQ_REDIS_DB = 12
BIN = Path(common.PYTHON).parent


class Peer:
    name = ""
    label = ""
    #: The environment its worker adds (a Django peer's apps: bench/settings.py, BENCH_APPS).
    worker_env: dict[str, str] = {}

    def reset(self) -> None: ...

    def enqueue_one(self) -> None: ...

    def enqueue_batch(self, count: int) -> None: ...

    def worker(self, drain: bool) -> list[str]: ...

    def close(self) -> None: ...


class DjangoTasksDB(Peer):
    """django-tasks-db on the benchmark's PostgreSQL database, `manage.py db_worker`."""

    name = "dtdb"
    worker_env = {"BENCH_APPS": "dtdb"}

    def __init__(self):
        common.setup("postgresql")
        from bench.tasks import noop_task

        self.task = noop_task.using(backend="db", queue_name="default")

    def reset(self) -> None:
        from django.db import connection
        from django_tasks_db.models import DBTaskResult

        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {DBTaskResult._meta.db_table}")

    def enqueue_one(self) -> None:
        self.task.enqueue()

    def enqueue_batch(self, count: int) -> None:
        from django.db import transaction

        with transaction.atomic():  # it has no bulk call: one transaction for the batch
            for _ in range(count):
                self.task.enqueue()

    def worker(self, drain: bool) -> list[str]:
        cmd = [common.PYTHON, common.MANAGE, "db_worker", "--backend", "db"]
        return cmd + (["--batch"] if drain else [])


class Procrastinate(Peer):
    """procrastinate (sync task) in its own PostgreSQL database, LISTEN/NOTIFY on."""

    name = "procrastinate"

    def __init__(self):
        sys.path.insert(0, str(common.ROOT))
        from bench.peers.procrastinate_app import app, noop

        self.app, self.task = app, noop
        self.app.open()

    def reset(self) -> None:
        with databases.pg_connect(databases.PROCRASTINATE_DB) as conn:
            conn.execute("TRUNCATE procrastinate_jobs CASCADE")

    def enqueue_one(self) -> None:
        self.task.defer()

    def enqueue_batch(self, count: int) -> None:
        self.task.batch_defer(*([{}] * count))

    def worker(self, drain: bool) -> list[str]:
        cmd = [common.PYTHON, "-m", "procrastinate", "--app=bench.peers.procrastinate_app.app"]
        cmd.append("worker")
        return cmd + (["--one-shot"] if drain else [])

    def close(self) -> None:
        self.app.close()


class Celery(Peer):
    """Celery with a Redis broker: prefork pool, concurrency = cores, prefetch x4."""

    name = "celery"

    def __init__(self):
        sys.path.insert(0, str(common.ROOT))
        from bench.peers.celery_app import app, noop

        self.app, self.task = app, noop

    def reset(self) -> None:
        import redis

        redis.Redis(db=CELERY_REDIS_DB).flushdb()

    def enqueue_one(self) -> None:
        self.task.delay()

    def enqueue_batch(self, count: int) -> None:
        from celery import group

        group(self.task.s() for _ in range(count)).apply_async()

    def worker(self, drain: bool) -> list[str]:
        return [
            common.PYTHON,
            "-m",
            "celery",
            "-A",
            "bench.peers.celery_app",
            "worker",
            "--loglevel",
            "WARNING",
        ]


class RQ(Peer):
    """RQ with Redis; `rq worker` forks a work horse per job (its default)."""

    name = "rq"
    worker_class = None

    def __init__(self):
        import redis
        import rq

        sys.path.insert(0, str(common.ROOT))
        from bench.peers.rq_jobs import noop

        self.redis = redis.Redis(db=RQ_REDIS_DB)
        self.queue = rq.Queue("bench", connection=self.redis)
        self.func = noop

    def reset(self) -> None:
        self.redis.flushdb()

    def enqueue_one(self) -> None:
        self.queue.enqueue(self.func)

    def enqueue_batch(self, count: int) -> None:
        import rq

        self.queue.enqueue_many([rq.Queue.prepare_data(self.func) for _ in range(count)])

    def worker(self, drain: bool) -> list[str]:
        cmd = [str(BIN / "rq"), "worker", "--url", f"redis://127.0.0.1:6379/{RQ_REDIS_DB}"]
        if self.worker_class:
            cmd += ["--worker-class", self.worker_class]
        return cmd + (["--burst"] if drain else []) + ["bench"]


class RQSimple(RQ):
    """RQ's SimpleWorker: jobs run in the worker process itself."""

    name = "rq-simple"
    worker_class = "rq.SimpleWorker"


PEERS = {cls.name: cls for cls in (DjangoTasksDB, Procrastinate, Celery, RQ, RQSimple)}


def enqueue(peer: Peer, n: int, batch: bool) -> dict:
    peer.reset()
    for _ in range(10):
        peer.enqueue_one()
    peer.reset()
    started = time.perf_counter()
    if batch:
        for start in range(0, n, 100):
            peer.enqueue_batch(min(100, n - start))
    else:
        for _ in range(n):
            peer.enqueue_one()
    return {"rate": n / (time.perf_counter() - started), "n": n}


def drain(peer: Peer, n: int, window: float) -> dict:
    from bench.jobs import read_marks

    peer.reset()
    for start in range(0, n, 100):
        peer.enqueue_batch(min(100, n - start))
    marks = common.fresh_mark_file(f"peer-{peer.name}")
    env = common.child_env("postgresql", BENCH_MARK_FILE=marks, **peer.worker_env)
    log = common.BENCH_DIR / ".data" / f"peer-{peer.name}.log"
    proc = common.start(peer.worker(drain=True), env, log)
    try:
        rss: dict = {}
        seen = common.wait_window(marks, n, window, 60.0, [proc], rss)
    finally:
        common.stop(proc)
    times = read_marks(marks)
    os.unlink(marks)
    result = {"rate": common.drain_rate(times), "n": len(times)}
    if rss.get("max_mb"):
        result["rss_mb"] = rss["max_mb"]
    if rss.get("max_pss_mb"):
        result["pss_mb"] = rss["max_pss_mb"]
    if seen < 2:
        result["error"] = f"{len(times)} of {n} ran"
    elif seen < n:
        result["window_seconds"] = window  # bounded in time: the rate of the window
    return result


def latency(peer: Peer, n: int, timeout: float) -> dict:
    peer.reset()
    marks = common.fresh_mark_file(f"peer-latency-{peer.name}")
    env = common.child_env("postgresql", BENCH_MARK_FILE=marks, **peer.worker_env)
    log = common.BENCH_DIR / ".data" / f"peer-latency-{peer.name}.log"
    proc = common.start(peer.worker(drain=False), env, log)
    try:
        result = common.measure_latency(peer.enqueue_one, marks, proc, n, timeout, settle=0.5)
    finally:
        common.stop(proc)
    os.unlink(marks)
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("what", choices=["enqueue-one", "enqueue-batch", "drain", "latency"])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--window", type=float, default=0.0, help="drain: seconds at most")
    args = parser.parse_args(argv)
    os.environ.setdefault("BENCH_DB", "postgresql")
    peer = PEERS[args.peer]()
    try:
        if args.what == "enqueue-one":
            result = enqueue(peer, args.n, batch=False)
        elif args.what == "enqueue-batch":
            result = enqueue(peer, args.n, batch=True)
        elif args.what == "drain":
            result = drain(peer, args.n, args.window)
        else:
            result = latency(peer, args.n, args.timeout)
    finally:
        peer.close()
    common.emit(result)


if __name__ == "__main__":
    sys.exit(main())
