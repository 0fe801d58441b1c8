"""Cron with real worker processes: each slot runs exactly once, however many workers serve it,
and the slots missed while no worker ran run once in all when workers start again.

The workers share an accelerated clock (tests/cron/cron_worker.py): one minute of their time is
SECONDS_PER_MINUTE real seconds, so a few minutes of `every 1 minutes` take well under a minute.
"""

from __future__ import annotations

import collections
import datetime
import json
import signal
import subprocess
import sys
import time

import pytest

from django_taskqueue.cron.config import all_cron_jobs
from django_taskqueue.models import TaskRecord, TaskState

from ..conftest import REPO_ROOT
from ..handlers import RECORD_ENV

pytestmark = pytest.mark.django_db(transaction=True)

SECONDS_PER_MINUTE = 4.0
SPEED = 60.0 / SECONDS_PER_MINUTE
CRON = {"tick": {"url": "/echo?job=tick", "schedule": "every 1 minutes"}}


@pytest.fixture
def cron_env(child_env, tmp_path, settings):
    settings.TASKQUEUE = {**settings.TASKQUEUE, "CRON": CRON}
    record = tmp_path / "record.jsonl"
    # Accelerated time starts 10 s (of its own) after a minute boundary.
    base = datetime.datetime(2026, 3, 1, 12, 0, 10, tzinfo=datetime.UTC).timestamp()
    real = time.time()
    child_env[RECORD_ENV] = str(record)
    child_env["TASKQUEUE_TEST_CLOCK"] = f"{base},{real},{SPEED}"
    child_env["TASKQUEUE_TEST_OVERRIDES"] = json.dumps({"CRON": CRON})

    def fake_now() -> float:
        return base + (time.time() - real) * SPEED

    return child_env, record, fake_now


def start_worker(env):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.cron.cron_worker",
            "--poll-interval",
            "0.05",
            "--concurrency",
            "2",
        ],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def handled(record) -> list[str]:
    """Return the task names of the cron requests the handler received, in order."""
    if not record.exists():
        return []
    rows = [json.loads(line) for line in record.read_text().splitlines() if line]
    return [r["headers"]["X-Appengine-Taskname"] for r in rows]


def slot_of(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def stop_all(workers):
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    outputs = [w.communicate(timeout=30)[0] for w in workers]
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, output


def enqueued(job) -> list[int]:
    """Return the slots whose task exists, in order."""
    names = TaskRecord.objects.filter(name__startswith=f"cron-{job.key}-").values_list(
        "name", flat=True
    )
    return sorted(slot_of(n) for n in names)


def test_three_workers_run_each_slot_once_and_missed_slots_once_in_all(cron_env):
    env, record, fake_now = cron_env
    (job,) = all_cron_jobs()

    workers = [start_worker(env) for _ in range(3)]
    try:
        wait_for(lambda: len(set(handled(record))) >= 4, 60, "four slots to run")
    finally:
        stop_all(workers)
    first = enqueued(job)
    stopped_at = fake_now()

    # No worker runs while at least two slots pass.
    wait_for(lambda: fake_now() >= (stopped_at // 60 + 3) * 60, 30, "slots to be missed")
    restarted_at = fake_now()
    workers = [start_worker(env) for _ in range(2)]
    try:
        wait_for(
            lambda: any(slot_of(n) > restarted_at for n in handled(record)),
            60,
            "a slot after the restart",
        )
    finally:
        stop_all(workers)

    names = handled(record)
    # Exactly once: no slot's request reached the handler twice.
    duplicates = [n for n, count in collections.Counter(names).items() if count > 1]
    assert duplicates == []
    assert all(n.startswith(f"cron-{job.key}-") for n in names)
    slots = enqueued(job)
    assert {slot_of(n) for n in names} <= set(slots)
    assert all(s % 60 == 0 for s in slots)
    # While workers ran, every minute had its run.
    assert first == list(range(first[0], first[-1] + 60, 60))
    second = [s for s in slots if s > first[-1]]
    assert second == list(range(second[0], second[-1] + 60, 60))
    # The downtime's slots (two or more) ran once in all: at most one of them has a task, the
    # latest (none if a worker's start took so long that the next slot came first).
    downtime = range(first[-1] + 60, int(restarted_at // 60 * 60) + 60, 60)
    assert len(downtime) >= 2
    assert [s for s in second if s in downtime] in ([], [downtime[-1]])
    # Each task ran once, successfully (the last one may not have run before the stop).
    for task in TaskRecord.objects.filter(name__startswith=f"cron-{job.key}-"):
        assert (task.state, task.execution_count) in (
            (TaskState.SUCCEEDED, 1),
            (TaskState.QUEUED, 0),
        )
