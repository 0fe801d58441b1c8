"""The floor: what the database does with the raw SQL of each verb, through the same client.

    python -m bench.floor OP --db postgresql --n 2000

OP is insert-one, insert-idle (one row per transaction after 20-50 ms of idleness: the
commit an idle worker's `add` waits for; prints latency percentiles in ms), insert-batch (100
rows per statement), claim-1 / claim-100 / claim-1000
(SELECT ... FOR UPDATE SKIP LOCKED then DELETE of those rows, one transaction per claim) and
claim-fused-1 / claim-fused-100 / claim-fused-1000 (one DELETE ... WHERE id IN (SELECT ... FOR
UPDATE SKIP LOCKED) RETURNING statement; PostgreSQL and SQLite). The table is a copy of the task
table (same columns, indexes and unique constraint) and the rows are the rows `add` writes for a
pull task with a 16-byte payload. One connection, no ORM: psycopg 3 with its defaults
(server-side binding, statements prepared after 5 runs), PyMySQL, the sqlite3 module.
"""

from __future__ import annotations

import argparse
import datetime
import secrets
import sqlite3
import sys
import time

from bench import common, databases

TABLE = "bench_floor"
SOURCE = "django_taskqueue_taskrecord"
COLUMNS = (
    "queue_name, name, state, method, url, headers, payload, tag, target, priority, eta, "
    "retry_count, execution_count, retry_options, enqueued_at, errors"
)
LEASE_COLUMNS = "id, name, payload, tag, eta, retry_count, retry_options, enqueued_at, headers"
QUEUE = common.PULL_QUEUE


class Client:
    """One raw connection and the dialect bits the statements differ in."""

    def __init__(self, db: str):
        self.db = db
        if db == "postgresql":
            self.conn = databases.pg_connect(databases.DB_NAME)
            self.mark = "%s"
        elif db == "mysql":
            self.conn = databases.mysql_connect(databases.DB_NAME)
            self.mark = "%s"
        else:
            path = common.BENCH_DIR / ".data" / f"{databases.DB_NAME}.sqlite3"
            # isolation_level=None: autocommit, transactions only where BEGIN says so.
            self.conn = sqlite3.connect(path, timeout=20, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.mark = "?"

    def execute(self, sql: str, params=()):
        if self.db == "sqlite":
            return self.conn.execute(sql, params)
        cursor = self.conn.cursor()
        cursor.execute(sql, params)
        return cursor

    def begin(self) -> None:
        if self.db == "postgresql":
            self.execute("BEGIN")
        elif self.db == "mysql":
            self.execute("START TRANSACTION")
        else:
            # SQLite has no row locks: the claim takes the write lock first, as ours does.
            self.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.execute("COMMIT")

    def timestamp(self, value: datetime.datetime):
        if self.db == "postgresql":
            return value
        if self.db == "mysql":
            return value.replace(tzinfo=None)
        return value.replace(tzinfo=None).isoformat(" ")

    # -- table ------------------------------------------------------------------------------

    def create_table(self) -> None:
        self.execute(f"DROP TABLE IF EXISTS {TABLE}")
        if self.db == "postgresql":
            self.execute(f"CREATE TABLE {TABLE} (LIKE {SOURCE} INCLUDING ALL)")
        elif self.db == "mysql":
            self.execute(f"CREATE TABLE {TABLE} LIKE {SOURCE}")
        else:
            rows = self.execute(
                "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL "
                "ORDER BY type DESC",
                (SOURCE,),
            ).fetchall()
            for (sql,) in rows:  # the table first ("table" > "index"), then its indexes
                sql = sql.replace(f'"{SOURCE}"', f'"{TABLE}"')
                sql = sql.replace('INDEX "', f'INDEX "{TABLE}_')
                self.execute(sql)

    def row(self, now) -> tuple:
        at = self.timestamp(now)
        return (
            QUEUE,
            secrets.token_hex(16),
            "queued",
            "PULL",
            "",
            "[]",
            b"x" * 16,
            None,
            None,
            0,
            at,
            0,
            0,
            None,
            at,
            "[]",
        )

    def insert_sql(self, count: int) -> str:
        one = "(" + ", ".join([self.mark] * 16) + ")"
        return f"INSERT INTO {TABLE} ({COLUMNS}) VALUES " + ", ".join([one] * count)

    def fill(self, n: int) -> None:
        now = common.now() - datetime.timedelta(seconds=1)
        for start in range(0, n, 100):
            count = min(100, n - start)
            params = [p for _ in range(count) for p in self.row(now)]
            self.execute(self.insert_sql(count), params)


def insert_one(client: Client, n: int) -> float:
    sql = client.insert_sql(1)
    for _ in range(20):
        client.execute(sql, client.row(common.now()))
    started = time.perf_counter()
    for _ in range(n):
        client.execute(sql, client.row(common.now()))  # autocommit: a transaction each
    return n / (time.perf_counter() - started)


def insert_idle(client: Client, n: int) -> dict:
    """One row per transaction, each after a pause: the latency scenario's add, without ours.

    The pauses are the latency scenario's (20-50 ms, same seed), so what the database does
    when it wakes for a commit (on PostgreSQL and MariaDB, the flush of its log to the disk)
    is measured as the idle latency meets it.
    """
    import random

    sql = client.insert_sql(1)
    for _ in range(20):
        client.execute(sql, client.row(common.now()))
    rng = random.Random(6)
    samples = []
    for _ in range(n):
        time.sleep(rng.uniform(0.02, 0.05))
        row = client.row(common.now())
        started = time.perf_counter()
        client.execute(sql, row)  # autocommit: a transaction each
        samples.append((time.perf_counter() - started) * 1000)
    return {"latency_ms": common.percentiles(samples), "n": n}


def insert_batch(client: Client, n: int) -> float:
    sql = client.insert_sql(100)
    client.execute(sql, [p for _ in range(100) for p in client.row(common.now())])
    batches = max(1, n // 100)
    started = time.perf_counter()
    for _ in range(batches):
        now = common.now()
        client.execute(sql, [p for _ in range(100) for p in client.row(now)])
    return batches * 100 / (time.perf_counter() - started)


def _due_sql(client: Client, size: int) -> str:
    lock = " FOR UPDATE SKIP LOCKED" if client.db != "sqlite" else ""
    m = client.mark
    return (
        f"SELECT {LEASE_COLUMNS} FROM {TABLE} WHERE queue_name = {m} AND state = 'queued' "
        f"AND eta <= {m} ORDER BY priority DESC, eta LIMIT {size}{lock}"
    )


def claim(client: Client, n: int, size: int) -> float:
    """Two statements in one transaction: the locking SELECT, then the DELETE of its rows."""
    client.fill(n)
    select = _due_sql(client, size)
    m = client.mark
    claimed = 0
    started = time.perf_counter()
    while True:
        client.begin()
        rows = client.execute(select, (QUEUE, client.timestamp(common.now()))).fetchall()
        if rows:
            ids = [r[0] for r in rows]
            if client.db == "postgresql":
                client.execute(f"DELETE FROM {TABLE} WHERE id = ANY({m})", (ids,))
            else:
                marks = ", ".join([m] * len(ids))
                client.execute(f"DELETE FROM {TABLE} WHERE id IN ({marks})", ids)
        client.commit()
        if not rows:
            break
        claimed += len(rows)
    return claimed / (time.perf_counter() - started)


def claim_fused(client: Client, n: int, size: int) -> float:
    """One statement: DELETE ... WHERE id IN (locking SELECT) RETURNING the leased columns."""
    if client.db == "mysql":
        raise NotImplementedError("MariaDB cannot DELETE with a LIMIT subquery of the same table")
    client.fill(n)
    m = client.mark
    lock = " FOR UPDATE SKIP LOCKED" if client.db != "sqlite" else ""
    sql = (
        f"DELETE FROM {TABLE} WHERE id IN (SELECT id FROM {TABLE} WHERE queue_name = {m} "
        f"AND state = 'queued' AND eta <= {m} ORDER BY priority DESC, eta LIMIT {size}{lock}) "
        f"RETURNING {LEASE_COLUMNS}"
    )
    claimed = 0
    started = time.perf_counter()
    while True:
        rows = client.execute(sql, (QUEUE, client.timestamp(common.now()))).fetchall()
        if not rows:
            break
        claimed += len(rows)
    return claimed / (time.perf_counter() - started)


WRITES = {
    # What a pull cycle writes per task, one statement per 1,000 rows chosen by id: the floor's
    # DELETE, our delete (a tombstone UPDATE) and our lease (an UPDATE of the lease columns).
    "write-delete": "DELETE FROM {table} WHERE id IN ({ids})",
    "write-tombstone": "UPDATE {table} SET state = 'deleted', finished_at = {m} WHERE id IN ({ids})",
    "write-lease": (
        "UPDATE {table} SET eta = {m}, leased_at = {m}, retry_count = retry_count + 1, "
        "first_attempt_at = COALESCE(first_attempt_at, {m}) WHERE id IN ({ids})"
    ),
}


def write(client: Client, n: int, op: str) -> float:
    """Time only the write statement, 1,000 rows at a time, autocommit."""
    client.fill(n)
    m = client.mark
    select = f"SELECT id FROM {TABLE} WHERE state = 'queued' ORDER BY id LIMIT 1000"
    elapsed, written = 0.0, 0
    while True:
        ids = [r[0] for r in client.execute(select).fetchall()]
        if not ids:
            break
        sql = WRITES[op].format(table=TABLE, m=m, ids=", ".join([m] * len(ids)))
        params = [client.timestamp(common.now())] * (sql.count(m) - len(ids)) + ids
        started = time.perf_counter()
        client.execute(sql, params)
        elapsed += time.perf_counter() - started
        written += len(ids)
        if op == "write-lease":  # leased rows stay 'queued': take them out of the next SELECT
            client.execute(
                f"UPDATE {TABLE} SET state = 'running' WHERE id IN ({', '.join([m] * len(ids))})",
                ids,
            )
    return written / elapsed


def run(op: str, db: str, n: int) -> dict:
    client = Client(db)
    client.create_table()
    try:
        if op == "insert-one":
            rate = insert_one(client, n)
        elif op == "insert-idle":
            return insert_idle(client, n)
        elif op == "insert-batch":
            rate = insert_batch(client, n)
        elif op in WRITES:
            rate = write(client, n, op)
        elif op.startswith("claim-fused-"):
            rate = claim_fused(client, n, int(op.rsplit("-", 1)[1]))
        elif op.startswith("claim-"):
            rate = claim(client, n, int(op.rsplit("-", 1)[1]))
        else:
            raise SystemExit(f"unknown floor operation {op}")
    except NotImplementedError as exc:
        return {"error": str(exc)}
    finally:
        client.execute(f"DROP TABLE IF EXISTS {TABLE}")
    return {"rate": rate, "n": n}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("op")
    parser.add_argument("--db", default="postgresql")
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args(argv)
    common.emit(run(args.op, args.db, args.n))


if __name__ == "__main__":
    sys.exit(main())
