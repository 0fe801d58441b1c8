"""Sixteen worker processes on one queue: its global rate limit holds, each task runs once.

Runs on every database. The bound is a correctness lower bound, not a speed figure: in any
one-second window no more tasks are claimed (a token spent each) than the bucket plus a second
of tokens (and a tenth more for the claims' clock readings), and the whole run takes at least
the time the tokens need.
"""

from __future__ import annotations

import bisect
import json
import time
from collections import Counter

import pytest
from django.db import transaction

from django_taskqueue.models import TaskRecord, TaskState
from django_taskqueue.taskqueue import Queue, Task

from ..handlers import RECORD_ENV
from .workers import WorkerFleet, problems

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WORKERS = 16
TASKS = 300
RATE, BUCKET = 40, 4
LOCK_WAIT_ALLOWANCE_SECONDS = 0.1
RATED = {"rated": {"rate": f"{RATE}/s", "bucket_size": BUCKET}}


def test_sixteen_workers_hold_a_global_rate(child_env, tmp_path, settings):
    record = tmp_path / "record.jsonl"
    child_env[RECORD_ENV] = str(record)
    child_env["TASKQUEUE_TEST_OVERRIDES"] = json.dumps(
        {"POLL_INTERVAL_SECONDS": 0.1, "QUEUES": RATED}
    )
    settings.TASKQUEUE = {**settings.TASKQUEUE, "QUEUES": RATED}
    fleet = WorkerFleet(child_env, tmp_path, WORKERS, "--queue", "rated", "--concurrency", "2")
    try:
        fleet.wait_started()
        with transaction.atomic():  # all due at once: the bucket is the only brake
            for start in range(0, TASKS, 100):
                batch = range(start, start + 100)
                Queue("rated").add(
                    [Task(method="GET", name=f"r{i:03}", url="/echo") for i in batch]
                )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if TaskRecord.objects.filter(state=TaskState.SUCCEEDED).count() == TASKS:
                break
            time.sleep(0.5)
        codes = fleet.stop()
    finally:
        fleet.kill()
    assert codes == [0] * WORKERS, fleet.outputs()
    assert TaskRecord.objects.filter(state=TaskState.SUCCEEDED).count() == TASKS
    for i in range(WORKERS):
        assert problems(fleet.output(i)) == [], fleet.output(i)

    entries = [json.loads(line) for line in record.read_text().splitlines() if line]
    runs = Counter(e["headers"]["X-Appengine-Taskname"] for e in entries)
    assert len(runs) == TASKS and set(runs.values()) == {1}, runs.most_common(3)
    workers = set(TaskRecord.objects.values_list("worker_id", flat=True))
    # A token is spent when a task is claimed (leased_at, the worker's clock at the claim); on
    # two busy cores a claimed task may start a moment later, next to tasks claimed after it.
    claims = sorted(t.timestamp() for t in TaskRecord.objects.values_list("leased_at", flat=True))
    starts = sorted(e["started"] for e in entries)
    busiest_claims, busiest_starts = _busiest_second(claims), _busiest_second(starts)
    span = claims[-1] - claims[0]
    print(
        f"{WORKERS} workers ({len(workers)} ran tasks): {TASKS} tasks claimed over {span:.2f} s; "
        f"busiest second: {busiest_claims} claims (bucket + rate: {BUCKET + RATE}), "
        f"{busiest_starts} handler starts"
    )
    # leased_at is read just before the claim waits for the queue's lock, so a stamp may be
    # earlier than the token it spent by that wait: a tenth of a second is allowed for it.
    assert busiest_claims <= BUCKET + RATE * (1 + LOCK_WAIT_ALLOWANCE_SECONDS)
    assert span >= (TASKS - BUCKET) / RATE - 0.05
    assert len(workers) > 1


def _busiest_second(times):
    return max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))
