"""Every write of a task row comes from the task store (`django_taskqueue/db/`).

Each statement that inserts, updates or deletes task rows is traced to the package's innermost
frame that issued it; the test runs the paths that change tasks (add, the worker's claim and
outcomes, sweeps, leases, deletes, purges, the admin's actions) and requires that frame to be
in `db/`.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

import django_taskqueue
from django_taskqueue.db import store
from django_taskqueue.dispatch.sweeps import Pruner, Rescuer
from django_taskqueue.models import QueueState, TaskRecord, TaskState
from django_taskqueue.taskqueue import Queue, Task
from django_taskqueue.testing import run_tasks

from ..conftest import claim_now

pytestmark = pytest.mark.django_db

PACKAGE_DIR = Path(django_taskqueue.__file__).resolve().parent
STORE_DIR = PACKAGE_DIR / "db"
TABLE = TaskRecord._meta.db_table
# A write whose target is the task table (a subquery that only reads it is not one), or a
# statement whose target cannot be read off its start (a CTE, a prepared statement).
WRITE = re.compile(
    rf"^\s*((INSERT\s+(IGNORE\s+)?INTO|UPDATE|DELETE\s+FROM)\s+[`\"]?{TABLE}[`\"]?\s"
    rf"|(WITH|EXECUTE|PREPARE)\b.*{TABLE})",
    re.IGNORECASE | re.DOTALL,
)


@pytest.fixture
def writers() -> Iterator[list[str]]:
    """The package file that issued each write of a task row (its innermost frame)."""
    found: list[str] = []

    def trace(execute, sql, params, many, context):
        if WRITE.match(sql) or sql.lstrip().upper().startswith("EXECUTE"):
            for frame in reversed(traceback.extract_stack()):
                path = Path(frame.filename).resolve()
                if path.is_relative_to(PACKAGE_DIR):
                    found.append(str(path.relative_to(PACKAGE_DIR)))
                    break
        return execute(sql, params, many, context)

    with connection.execute_wrapper(trace):
        yield found


def test_the_task_changing_paths_write_only_through_the_store(writers, frozen_clock, settings):
    push, pull = Queue("default"), Queue("pull-queue")
    push.add([Task(url="/echo", name=f"ok{i}") for i in range(2)])
    push.add(Task(url="/echo?status=500", method="GET", name="fails"))
    run_tasks("default")  # claim, successes, a retry

    pull.add([Task(b"x", method="PULL", name=f"p{i}") for i in range(3)])
    [leased, *_] = pull.lease_tasks(60, 3)
    pull.modify_task_lease(leased, 30)
    pull.delete_tasks(leased)
    pull.purge()

    push.add(Task(url="/echo", name="lost"))
    QueueState.objects.get_or_create(name="default")
    claim_now("default", frozen_clock, max_tasks=10)
    frozen_clock.advance(3600)
    Rescuer("default", 1).run(frozen_clock.now())
    tasks = store("default")
    tasks.run_now(TaskRecord.objects.all(), frozen_clock.now())
    TaskRecord.objects.filter(name="fails")  # a read: not traced
    frozen_clock.advance(10**7)
    Pruner("default", 1).run(frozen_clock.now())

    assert writers, "the paths above write task rows"
    outside = sorted({w for w in writers if not (PACKAGE_DIR / w).is_relative_to(STORE_DIR)})
    assert outside == []


def test_the_trace_sees_a_write_made_elsewhere(writers):
    Queue("default").add(Task(url="/x", name="a"))
    assert all(w.startswith("db/") for w in writers)
    TaskRecord.objects.filter(name="a").update(state=TaskState.DELETED)  # from this test file
    assert len(writers) == 1  # the test's own write has no package frame
