"""Before and after the hot-path changes, interleaved in one process (PostgreSQL).

    bench/.venv/bin/python -m bench.ab [--rounds 5]

lease: the portable lease (`Operations.lease`: a locking SELECT, then an UPDATE of the ids,
which PostgreSQL used before) against PostgreSQL's one-statement lease, on the same table, in
alternating rounds of 5,000 tasks leased 1,000 at a time.
add: `prepared_rows` as it was (every column through its field's `get_db_prep_save`, the
INSERT text rebuilt on every call) against the current one, for rows of one task and of 100.
claim: the worker's claim as the portable transaction (lock the bucket row, SELECT … SKIP
LOCKED, UPDATE, write the bucket, five round trips with BEGIN and COMMIT) against PostgreSQL's
one prepared statement, claiming 1 task (an idle worker woken for one task) and 20 (a busy one).
add one: the one-task INSERT as a plain statement against the prepared one.
Prints medians of wall time and of this process's CPU time per task.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from bench import common


def _old_prepared_rows(ops, rows):
    from django_taskqueue.db.base import INSERT_COLUMNS
    from django_taskqueue.models import TaskRecord

    fields = [TaskRecord._meta.get_field(column) for column in INSERT_COLUMNS]
    columns = ", ".join(ops.connection.ops.quote_name(c) for c in INSERT_COLUMNS)  # noqa: F841
    placeholder = "(" + ", ".join(["%s"] * len(INSERT_COLUMNS)) + ")"  # noqa: F841
    return [
        tuple(
            f.get_db_prep_save(v, ops.connection) for f, v in zip(fields, row.values(), strict=True)
        )
        for row in rows
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    common.setup("postgresql")
    from django_taskqueue import clock
    from django_taskqueue.db import operations
    from django_taskqueue.db.base import Operations, TaskRow
    from django_taskqueue.taskqueue import _new_task_name

    ops = operations("default")
    result: dict[str, dict[str, list[float]]] = {}

    def record(name, wall, cpu, tasks):
        r = result.setdefault(name, {"wall_us": [], "cpu_us": []})
        r["wall_us"].append(wall / tasks * 1e6)
        r["cpu_us"].append(cpu / tasks * 1e6)

    def leases(lease_fn, name):
        common.reset_tables()
        common.seed_pull(5000)
        common.analyze()
        now = clock.now()
        wall, cpu = time.perf_counter(), time.process_time()
        leased = 0
        while True:
            rows = lease_fn(
                common.PULL_QUEUE, now, now.replace(year=now.year + 1), 1000, lambda row: True
            )
            if not rows:
                break
            leased += len(rows)
        record(name, time.perf_counter() - wall, time.process_time() - cpu, leased)

    def rows(count):
        now = clock.now()
        return [
            TaskRow(
                queue_name=common.PULL_QUEUE,
                name=_new_task_name(),
                method="PULL",
                url="",
                headers=[],
                payload=b"x" * 16,
                tag=None,
                target=None,
                eta=now,
                enqueued_at=now,
            )
            for _ in range(count)
        ]

    def prep(fn, name, count, repeat):
        batches = [rows(count) for _ in range(repeat)]
        wall, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            fn(batch)
            if name.endswith("after"):
                ops.insert_sql(count)
        record(name, time.perf_counter() - wall, time.process_time() - cpu, count * repeat)

    from django_taskqueue.db.base import Operations as Portable
    from django_taskqueue.db.postgresql import PostgreSQLOperations
    from django_taskqueue.dispatch.claim import claim, ensure_queue_state
    from django_taskqueue.queues import get_queue_config
    from django_taskqueue.taskqueue import Queue, Task

    push = get_queue_config(common.PUSH_QUEUE)

    def claims(size, name, one_statement):
        common.reset_tables()
        ensure_queue_state("default", common.PUSH_QUEUE)
        common.seed_push(size * 300)
        common.analyze()
        fused = PostgreSQLOperations.claim_in_one_statement
        if not one_statement:  # the vendor has no such statement: the transaction runs
            PostgreSQLOperations.claim_in_one_statement = Portable.claim_in_one_statement
        try:
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
        finally:
            PostgreSQLOperations.claim_in_one_statement = fused

    def adds(name, prepared):
        common.reset_tables()
        queue = Queue(common.PULL_QUEUE)
        queue.add(Task(b"x" * 16, method="PULL"))  # the session prepares it here
        fast = PostgreSQLOperations._execute_prepared
        if not prepared:
            PostgreSQLOperations._execute_prepared = PostgreSQLOperations._execute_unprepared
        try:
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(1000):
                queue.add(Task(b"x" * 16, method="PULL"))
            record(name, time.perf_counter() - wall, time.process_time() - cpu, 1000)
        finally:
            PostgreSQLOperations._execute_prepared = fast

    for _ in range(args.rounds):
        claims(1, "claim 1 task: transaction (before)", False)
        claims(1, "claim 1 task: one prepared statement (after)", True)
        claims(20, "claim 20 tasks: transaction (before)", False)
        claims(20, "claim 20 tasks: one prepared statement (after)", True)
        adds("add one: plain INSERT (before)", False)
        adds("add one: prepared INSERT (after)", True)
        leases(lambda *a: Operations.lease(ops, *a), "lease 1000: SELECT + UPDATE (before)")
        leases(ops.lease, "lease 1000: one statement (after)")
        prep(lambda b: _old_prepared_rows(ops, b), "prepare 1 row (before)", 1, 2000)
        prep(ops.prepared_rows, "prepare 1 row (after)", 1, 2000)
        prep(lambda b: _old_prepared_rows(ops, b), "prepare 100 rows (before)", 100, 40)
        prep(ops.prepared_rows, "prepare 100 rows (after)", 100, 40)
    summary = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in result.items()}
    for name, r in summary.items():
        print(f"{name:40} wall {r['wall_us']:7.1f} µs/task   CPU {r['cpu_us']:7.1f} µs/task")
    common.emit(summary)


if __name__ == "__main__":
    sys.exit(main())
