"""Before and after the hot-path changes, interleaved in one process (PostgreSQL).

    bench/.venv/bin/python -m bench.ab [--rounds 5]

lease: the portable lease (`Operations.lease`: a locking SELECT, then an UPDATE of the ids,
which PostgreSQL used before) against PostgreSQL's one-statement lease, on the same table, in
alternating rounds of 5,000 tasks leased 1,000 at a time.
add: `prepared_rows` as it was (every column through its field's `get_db_prep_save`, the
INSERT text rebuilt on every call) against the current one, for rows of one task and of 100.
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

    for _ in range(args.rounds):
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
