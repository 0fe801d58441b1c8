"""Leasing from many OS processes at once: every task leased exactly once, none lost."""

import subprocess
import sys
import time

import pytest
from django.db import connection

from django_taskqueue.models import TaskRecord, TaskState
from django_taskqueue.taskqueue import Queue, Task

from ..conftest import REPO_ROOT

CONSUMERS = 4
TASKS = 5000


@pytest.mark.django_db(transaction=True)
def test_four_processes_lease_5000_tasks_exactly_once(child_env, tmp_path):
    queue = Queue("pull-queue")
    for start in range(0, TASKS, 100):
        queue.add([Task(b"x", method="PULL", name=f"t{i}") for i in range(start, start + 100)])

    go = tmp_path / "go"
    outfiles = [tmp_path / f"consumer-{n}.txt" for n in range(CONSUMERS)]
    consumers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.lease_consumer", "pull-queue", str(out), str(go)],
            cwd=REPO_ROOT,
            env=child_env,
        )
        for out in outfiles
    ]
    # Start them together, once each has set Django up and connected (each creates its file).
    deadline = time.monotonic() + 120
    while not all(out.exists() for out in outfiles):
        assert time.monotonic() < deadline, "a consumer never became ready"
        assert all(c.poll() is None for c in consumers), "a consumer exited before starting"
        time.sleep(0.02)
    go.touch()
    for consumer in consumers:
        assert consumer.wait(timeout=300) == 0

    leased = [out.read_text().split() for out in outfiles]
    names = [name for batch in leased for name in batch]
    # Leases were 600 s long, so a task leased twice would be a lock that failed.
    assert len(names) == len(set(names)) == TASKS
    assert set(names) == {f"t{i}" for i in range(TASKS)}
    if connection.vendor != "sqlite":
        # Row locks let the consumers work side by side: each leased a share. (SQLite takes
        # its one write lock per claim, and whichever process wins the busy-wait race may
        # take most batches: still exactly once, but not shared evenly.)
        assert all(batch for batch in leased), [len(batch) for batch in leased]
    assert TaskRecord.objects.filter(state=TaskState.DELETED).count() == TASKS
    assert not TaskRecord.objects.filter(state=TaskState.QUEUED).exists()
