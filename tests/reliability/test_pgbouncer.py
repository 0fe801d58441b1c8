"""Many workers through PgBouncer in transaction mode: no errors, no task run twice or lost.

PostgreSQL only: PgBouncer is PostgreSQL's connection pooler (it speaks PostgreSQL's wire
protocol and nothing else); MariaDB and SQLite have no counterpart here. In transaction mode a
worker's prepared statements do not follow it from one transaction to the next, so the worker's
fallback to plain statements is exercised through the real pooler, not a simulation.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection, transaction

from django_taskqueue.models import TaskRecord, TaskState
from django_taskqueue.taskqueue import Queue, Task

from ..handlers import RECORD_ENV
from .pgbouncer import pgbouncer
from .workers import WorkerFleet, problems

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="PgBouncer is PostgreSQL's connection pooler; other databases have none here",
    ),
]

WORKERS = 8
TASKS = 400


def test_many_workers_through_pgbouncer_in_transaction_mode(child_env, tmp_path):
    settings_dict = connection.settings_dict
    with pgbouncer(
        settings_dict["HOST"] or "127.0.0.1",
        int(settings_dict["PORT"] or 5432),
        settings_dict["USER"] or "postgres",
    ) as port:
        url = urlsplit(child_env["DATABASE_URL"])
        child_env["DATABASE_URL"] = urlunsplit(
            url._replace(netloc=f"{url.username or 'postgres'}@127.0.0.1:{port}")
        )
        record = tmp_path / "record.jsonl"
        child_env[RECORD_ENV] = str(record)
        child_env["TASKQUEUE_TEST_OVERRIDES"] = json.dumps({"POLL_INTERVAL_SECONDS": 0.1})
        with transaction.atomic():
            for start in range(0, TASKS, 100):
                Queue("fast").add(
                    [
                        Task(method="GET", name=f"b{i:03}", url="/echo")
                        for i in range(start, start + 100)
                    ]
                )
        # Half of them retry once, so failures are written through the pooler too.
        Queue("fast").add(
            [Task(method="GET", name=f"f{i:02}", url="/fail-first") for i in range(40)]
        )
        fleet = WorkerFleet(
            child_env, tmp_path, WORKERS, "--burst", "--queue", "fast", "--concurrency", "2"
        )
        try:
            codes = fleet.wait_exited(timeout=300)
            # Burst workers that started late may find nothing; any retries left (after their
            # backoff) are run by one more.
            deadline = time.monotonic() + 120
            while TaskRecord.objects.exclude(state=TaskState.SUCCEEDED).exists():
                assert time.monotonic() < deadline, "tasks left unrun"
                (tmp_path / "extra").mkdir(exist_ok=True)
                extra = WorkerFleet(child_env, tmp_path / "extra", 1, "--burst", "--queue", "fast")
                codes += extra.wait_exited(timeout=120)
                time.sleep(0.5)
        finally:
            fleet.kill()
    outputs = fleet.outputs()
    assert set(codes) == {0}, outputs
    for i in range(WORKERS):
        assert problems(fleet.output(i)) == [], fleet.output(i)
    assert TaskRecord.objects.filter(state=TaskState.SUCCEEDED).count() == TASKS + 40
    entries = [json.loads(line) for line in record.read_text().splitlines() if line]
    runs = Counter(e["headers"]["X-Appengine-Taskname"] for e in entries)
    # Each echo task ran once; each fail-first task twice (its 503, then its success).
    assert {name: n for name, n in runs.items() if name.startswith("b")} == {
        f"b{i:03}": 1 for i in range(TASKS)
    }
    assert {name: n for name, n in runs.items() if name.startswith("f")} == {
        f"f{i:02}": 2 for i in range(40)
    }
    fallbacks = outputs.count("event=prepared_statements_off")
    print(f"{WORKERS} workers through PgBouncer: {len(entries)} attempts, {fallbacks} fallbacks")
