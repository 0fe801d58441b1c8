"""The benchmark's own databases: created fresh, migrated, and described (versions)."""

from __future__ import annotations

import os
import sqlite3
import subprocess

from bench import common

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root"}
DB_NAME = os.environ.get("BENCH_DB_NAME", "taskqueue_bench")
#: procrastinate's own database: beside ours, named after it when BENCH_DB_NAME is set, so two
#: runs with different names never drop each other's. Its processes read it from the environment.
PROCRASTINATE_DB = os.environ.get("BENCH_PROCRASTINATE_DB") or (
    "procrastinate_bench" if DB_NAME == "taskqueue_bench" else f"{DB_NAME}_procrastinate"
)
os.environ["BENCH_PROCRASTINATE_DB"] = PROCRASTINATE_DB


def pg_connect(dbname: str = "postgres"):
    import psycopg

    return psycopg.connect(dbname=dbname, autocommit=True, **PG)


def mysql_connect(database: str | None = None):
    import pymysql

    return pymysql.connect(database=database, autocommit=True, charset="utf8mb4", **MYSQL)


def recreate(db: str, name: str = DB_NAME) -> None:
    """Drop and create the benchmark database `name` of vendor `db`, then migrate it.

    The main database (`DB_NAME`) brings procrastinate's beside it on PostgreSQL; another
    name (the scale rounds' empty database) is created alone.
    """
    if db == "postgresql":
        with pg_connect() as conn:
            for each in (name, PROCRASTINATE_DB) if name == DB_NAME else (name,):
                conn.execute(f"DROP DATABASE IF EXISTS {each} WITH (FORCE)")
                conn.execute(f"CREATE DATABASE {each}")
    elif db == "mysql":
        conn = mysql_connect()
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")
            # utf8mb4_bin: task names are case-sensitive, as the test settings say.
            cursor.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        conn.close()
    else:
        data = common.BENCH_DIR / ".data"
        data.mkdir(exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            (data / f"{name}.sqlite3{suffix}").unlink(missing_ok=True)
    subprocess.run(
        [common.PYTHON, common.MANAGE, "migrate", "--no-input", "-v", "0"],
        cwd=common.ROOT,
        env=common.child_env(db, BENCH_DB_NAME=name),
        check=True,
    )


def version(db: str) -> str:
    try:
        if db == "postgresql":
            with pg_connect() as conn:
                return conn.execute("SHOW server_version").fetchone()[0].split()[0]
        if db == "mysql":
            conn = mysql_connect()
            with conn.cursor() as cursor:
                cursor.execute("SELECT VERSION()")
                value = cursor.fetchone()[0]
            conn.close()
            return value
        return sqlite3.sqlite_version
    except Exception as exc:  # noqa: BLE001 - reported in the table, not fatal
        return f"unavailable ({exc.__class__.__name__})"


def settings_summary(db: str) -> str:
    """The durability settings that bound every commit-per-task figure."""
    try:
        if db == "postgresql":
            with pg_connect() as conn:
                values = [
                    conn.execute(f"SHOW {name}").fetchone()[0]
                    for name in ("synchronous_commit", "fsync", "shared_buffers")
                ]
            return "synchronous_commit={}, fsync={}, shared_buffers={}".format(*values)
        if db == "mysql":
            conn = mysql_connect()
            with conn.cursor() as cursor:
                cursor.execute(
                    "SELECT @@innodb_flush_log_at_trx_commit, @@innodb_buffer_pool_size, "
                    "@@sync_binlog, @@log_bin"
                )
                flush, pool, sync_binlog, log_bin = cursor.fetchone()
            conn.close()
            return (
                f"innodb_flush_log_at_trx_commit={flush}, innodb_buffer_pool_size="
                f"{int(pool) // 2**20}M, log_bin={log_bin}, sync_binlog={sync_binlog}"
            )
        return "journal_mode=WAL, synchronous=FULL (default), file in bench/.data"
    except Exception as exc:  # noqa: BLE001
        return f"unavailable ({exc.__class__.__name__})"
