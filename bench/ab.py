"""The portable path of each hot-path verb against PostgreSQL's, interleaved in one process.

    bench/.venv/bin/python -m bench.ab [--rounds 5]

Both sides are code the store runs today: the portable one wherever the vendor's fast path does
not apply (a queue with `max_concurrent_requests`, a lease by tag, a statement inside the
caller's transaction), PostgreSQL's everywhere else.

claim: the claim as the portable transaction (lock the bucket row, SELECT … SKIP LOCKED, UPDATE,
write the bucket: five round trips with BEGIN and COMMIT) against PostgreSQL's one prepared
statement (`features.can_claim_in_one_statement`), claiming 1 task (an idle worker woken for
one task) and 20 (a busy one).
lease: the portable lease (a locking SELECT, then an UPDATE of the ids) against PostgreSQL's
one-statement lease, on the same table, in rounds of 5,000 tasks leased 1,000 at a time.
Prints medians of wall time and of this process's CPU time per task.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench import common


@contextmanager
def _portable_claim() -> Iterator[None]:
    """Make PostgreSQL's store claim in the portable transaction, as it does under a cap."""
    from django_taskqueue.db.features import PostgreSQLFeatures
    from django_taskqueue.db.postgresql import PostgreSQLOperations

    class Portable(PostgreSQLFeatures):
        can_claim_in_one_statement = False

    PostgreSQLOperations.features = Portable
    try:
        yield
    finally:
        PostgreSQLOperations.features = PostgreSQLFeatures


@contextmanager
def _as_is() -> Iterator[None]:
    yield


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    common.setup("postgresql")
    from django_taskqueue import clock
    from django_taskqueue.db import store
    from django_taskqueue.db.base import TaskStore
    from django_taskqueue.dispatch.claim import claim, ensure_queue_state
    from django_taskqueue.queues import get_queue_config

    tasks = store("default")
    push = get_queue_config(common.PUSH_QUEUE)
    result: dict[str, dict[str, list[float]]] = {}

    def record(name: str, wall: float, cpu: float, count: int) -> None:
        r = result.setdefault(name, {"wall_us": [], "cpu_us": []})
        r["wall_us"].append(wall / count * 1e6)
        r["cpu_us"].append(cpu / count * 1e6)

    def claims(size: int, name: str, mode: Callable[[], Any]) -> None:
        common.reset_tables()
        ensure_queue_state("default", common.PUSH_QUEUE)
        common.seed_push(size * 300)
        common.analyze()
        with mode():
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(300):
                got = claim(
                    "default",
                    push,
                    now=clock.now(),
                    worker_id="ab",
                    max_tasks=size,
                    lease_seconds=60,
                )
                assert len(got.tasks) == size, got
            record(name, time.perf_counter() - wall, time.process_time() - cpu, 300 * size)

    def leases(lease: Callable[..., list[Any]], name: str) -> None:
        common.reset_tables()
        common.seed_pull(5000)
        common.analyze()
        now = clock.now()
        wall, cpu = time.perf_counter(), time.process_time()
        leased = 0
        while rows := lease(
            common.PULL_QUEUE, now, now.replace(year=now.year + 1), 1000, lambda row: True
        ):
            leased += len(rows)
        record(name, time.perf_counter() - wall, time.process_time() - cpu, leased)

    for _ in range(args.rounds):
        claims(1, "claim 1 task: transaction (portable)", _portable_claim)
        claims(1, "claim 1 task: one prepared statement (PostgreSQL)", _as_is)
        claims(20, "claim 20 tasks: transaction (portable)", _portable_claim)
        claims(20, "claim 20 tasks: one prepared statement (PostgreSQL)", _as_is)
        leases(lambda *a: TaskStore.lease(tasks, *a), "lease 1000: SELECT + UPDATE (portable)")
        leases(tasks.lease, "lease 1000: one statement (PostgreSQL)")
    summary = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in result.items()}
    for name, r in summary.items():
        print(f"{name:52} wall {r['wall_us']:7.1f} µs/task   CPU {r['cpu_us']:7.1f} µs/task")
    common.emit(summary)


if __name__ == "__main__":
    sys.exit(main())
