"""Real worker subprocesses: SIGKILL loses nothing, SIGTERM finishes in-flight work, and two
workers share one queue's token bucket and concurrency limit."""

from __future__ import annotations

import bisect
import itertools
import json
import signal
import subprocess
import sys
import time

import pytest

from django_taskqueue.models import TaskRecord, TaskState
from django_taskqueue.taskqueue import Queue, Task

from ..conftest import REPO_ROOT
from ..handlers import RECORD_ENV

pytestmark = pytest.mark.django_db(transaction=True)

# Short deadlines and sweeps, so a dead worker's lease expires within seconds.
FAST_LEASES = {
    "DEFAULT_DEADLINE_SECONDS": 2,
    "LEASE_MARGIN_SECONDS": 1,
    "RESCUE_INTERVAL_SECONDS": 0.2,
    "POLL_INTERVAL_SECONDS": 0.1,
}


@pytest.fixture
def worker_env(child_env, tmp_path):
    record = tmp_path / "record.jsonl"
    child_env[RECORD_ENV] = str(record)
    child_env["TASKQUEUE_TEST_OVERRIDES"] = json.dumps(FAST_LEASES)
    return child_env, record


def entries(record, event=None):
    if not record.exists():
        return []
    rows = [json.loads(line) for line in record.read_text().splitlines() if line]
    return [r for r in rows if event is None or r.get("event") == event]


def start_worker(env, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "django", "runtaskworker", *args],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def stop(proc):
    if proc.poll() is None:
        proc.kill()
    return proc.communicate(timeout=10)[0]


def test_sigkill_mid_task_runs_it_again_after_its_lease(worker_env):
    env, record = worker_env
    Queue("default").add(Task(method="GET", name="victim", url="/sleep?seconds=60&first=1&mark=1"))
    first = start_worker(env, "--queue", "default", "--worker-id", "doomed")
    try:
        wait_for(lambda: entries(record, "started"), what="the handler to start")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        stop(first)
    Queue("default").add([Task(method="GET", name=f"other{i}", url="/echo") for i in range(3)])
    assert TaskRecord.objects.get(name="victim").state == TaskState.RUNNING

    second = start_worker(env, "--queue", "default", "--worker-id", "heir")
    try:
        wait_for(
            lambda: TaskRecord.objects.filter(state=TaskState.SUCCEEDED).count() == 4,
            what="every task to succeed",
        )
    finally:
        output = stop(second)
    victim = TaskRecord.objects.get(name="victim")
    assert victim.retry_count == 1, output
    assert victim.worker_id == "heir"
    assert victim.errors[0]["reason"] == "worker lost"
    assert victim.errors[0]["worker_id"] == "doomed"
    finished = [e for e in entries(record, "finished") if e["path"] == "/sleep"]
    assert len(finished) == 1
    assert finished[0]["headers"]["X-Appengine-Taskretrycount"] == "1"
    assert finished[0]["headers"]["X-Appengine-Taskretryreason"] == "worker lost"


def test_sigterm_lets_the_in_flight_task_finish_and_exits_0(worker_env):
    env, record = worker_env
    env["TASKQUEUE_TEST_OVERRIDES"] = json.dumps({"POLL_INTERVAL_SECONDS": 0.1})
    Queue("default").add(Task(method="GET", name="inflight", url="/sleep?seconds=2&mark=1"))
    Queue("default").add(Task(method="GET", name="waiting", url="/echo", countdown=1))
    proc = start_worker(env, "--queue", "default")
    try:
        wait_for(lambda: entries(record, "started"), what="the handler to start")
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
    finally:
        stop(proc)
    assert proc.returncode == 0, output
    assert TaskRecord.objects.get(name="inflight").state == TaskState.SUCCEEDED
    assert len(entries(record, "finished")) == 1
    # No new work after the signal.
    assert TaskRecord.objects.get(name="waiting").state == TaskState.QUEUED
    assert "event=worker_stopping" in output
    assert "event=attempt queue=default task=inflight" in output


def run_two_burst_workers(env, queue):
    """Run workers w0 and w1 (concurrency 2) on `queue` until it is empty; return their output."""
    args = ["--queue", queue, "--burst", "--concurrency", "2"]
    workers = [start_worker(env, *args, "--worker-id", f"w{i}") for i in range(2)]
    try:
        outputs = [w.communicate(timeout=120)[0] for w in workers]
    finally:
        for w in workers:
            stop(w)
    assert [w.returncode for w in workers] == [0, 0], outputs
    return outputs


def test_two_workers_share_the_bucket_and_the_concurrency_limit(worker_env):
    # queue "throttled": rate 20/s, bucket_size 1, max_concurrent_requests 1.
    env, record = worker_env
    env["TASKQUEUE_TEST_OVERRIDES"] = json.dumps({"POLL_INTERVAL_SECONDS": 0.1})
    Queue("throttled").add(
        [Task(method="GET", name=f"t{i:02}", url="/sleep?seconds=0.005") for i in range(60)]
    )
    started = time.monotonic()
    outputs = run_two_burst_workers(env, "throttled")
    elapsed = time.monotonic() - started
    assert TaskRecord.objects.filter(state=TaskState.SUCCEEDED).count() == 60
    runs = sorted(entries(record, "finished"), key=lambda e: e["started"])
    assert len(runs) == 60
    # Both workers took part: the bucket is global, not per worker.
    assert len(set(TaskRecord.objects.values_list("worker_id", flat=True))) == 2, outputs
    # One token at the start, then 59 at 20/s: at least 2.95 s from first start to last.
    assert runs[-1]["started"] - runs[0]["started"] >= 2.8
    assert elapsed >= 2.8
    overlaps = sum(1 for a, b in itertools.pairwise(runs) if b["started"] < a["finished"])
    assert overlaps == 0


def test_two_workers_never_beat_a_shared_rate(worker_env, settings):
    # A bucket without a concurrency cap: on PostgreSQL each claim is one statement, and two
    # workers claiming at once must still spend each token once. Rate 20/s, bucket 1: the
    # 40 tasks cannot start within less than 39 / 20 = 1.95 s, however the claims interleave.
    env, record = worker_env
    rated = {"rated": {"rate": "20/s", "bucket_size": 1}}
    settings.TASKQUEUE = {**settings.TASKQUEUE, "QUEUES": rated}
    env["TASKQUEUE_TEST_OVERRIDES"] = json.dumps({"POLL_INTERVAL_SECONDS": 0.1, "QUEUES": rated})
    Queue("rated").add([Task(method="GET", name=f"r{i:02}", url="/echo") for i in range(40)])
    outputs = run_two_burst_workers(env, "rated")
    assert TaskRecord.objects.filter(state=TaskState.SUCCEEDED).count() == 40
    assert len(set(TaskRecord.objects.values_list("worker_id", flat=True))) == 2, outputs
    starts = sorted(e["started"] for e in entries(record))
    assert len(starts) == 40
    assert starts[-1] - starts[0] >= 1.9
    # No second holds more than the bucket plus a second of tokens (1 + 20).
    assert max(bisect.bisect_left(starts, t + 1.0) - i for i, t in enumerate(starts)) <= 21


def test_an_idle_worker_wakes_up_for_a_new_task(worker_env):
    """PostgreSQL: LISTEN/NOTIFY wakes an idle worker at once, though it polls only every 30 s.
    Other databases: the worker polls at --poll-interval."""
    from django.db import connection

    env, record = worker_env
    env["TASKQUEUE_TEST_OVERRIDES"] = "{}"
    notify = connection.vendor == "postgresql"
    poll = "30" if notify else "0.2"
    proc = start_worker(env, "--queue", "fast", "--poll-interval", poll)
    try:
        Queue("fast").add(Task(method="GET", name="warm", url="/echo"))
        wait_for(lambda: entries(record), what="the first task")
        time.sleep(1.0)  # idle now, waiting
        added = time.time()
        Queue("fast").add(Task(method="GET", name="wake", url="/echo"))
        wait_for(lambda: len(entries(record)) == 2, what="the second task", timeout=20)
    finally:
        output = stop(proc)
    latency = entries(record)[1]["started"] - added
    assert latency < (0.5 if notify else 1.5), output


def _kill_other_connections():
    """Terminate every other session on the test database (the worker's); return how many."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return len(cursor.fetchall())
        cursor.execute(
            "SELECT id FROM information_schema.processlist "
            "WHERE db = DATABASE() AND id <> CONNECTION_ID()"
        )
        ids = [row[0] for row in cursor.fetchall()]
        for session in ids:
            cursor.execute(f"KILL {int(session)}")
        return len(ids)


def test_the_worker_survives_losing_its_database_connections(worker_env):
    """Server databases: the worker's sessions are killed. SQLite: the file is locked."""
    from django.db import connection

    env, record = worker_env
    env["TASKQUEUE_TEST_OVERRIDES"] = json.dumps({"POLL_INTERVAL_SECONDS": 0.1})
    sqlite = connection.vendor == "sqlite"
    if sqlite:
        # Wait at most 1 s for a lock, so a locked file is an error the worker must survive.
        env["DATABASE_URL"] += "?timeout=1"
    proc = start_worker(env, "--queue", "fast")
    try:
        Queue("fast").add(Task(method="GET", name="before", url="/echo"))
        wait_for(lambda: entries(record), what="the first task")
        time.sleep(0.3)
        if sqlite:
            # Due a second into the lock: the idle worker's read of what is due gets through
            # a locked file, its claim (a write) must wait, fail, and be tried again.
            Queue("fast").add(Task(method="GET", name="after", url="/echo", countdown=1))
            _lock_sqlite_file(connection.settings_dict["NAME"], seconds=3)
        else:
            assert _kill_other_connections() >= 1
            Queue("fast").add(Task(method="GET", name="after", url="/echo"))
        wait_for(
            lambda: TaskRecord.objects.filter(name="after", state=TaskState.SUCCEEDED).exists(),
            what="a task after the disconnect",
        )
        assert proc.poll() is None
    finally:
        output = stop(proc)
    if sqlite:
        assert "event=database_error" in output, output
    else:
        assert "event=database_error" in output or "event=attempt" in output


def _lock_sqlite_file(path: str, seconds: float) -> None:
    """Hold SQLite's exclusive lock on `path` for `seconds` from another connection."""
    import sqlite3

    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        time.sleep(seconds)
        other.execute("ROLLBACK")
    finally:
        other.close()


def test_a_second_signal_exits_at_once(worker_env):
    env, record = worker_env
    env["TASKQUEUE_TEST_OVERRIDES"] = json.dumps({"POLL_INTERVAL_SECONDS": 0.1})
    Queue("default").add(Task(method="GET", name="long", url="/sleep?seconds=60&mark=1"))
    proc = start_worker(env, "--queue", "default")
    try:
        wait_for(lambda: entries(record, "started"), what="the handler to start")
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        output = proc.communicate(timeout=10)[0]
    finally:
        stop(proc)
    assert time.monotonic() - started < 5
    assert proc.returncode != 0, output
    assert "event=worker_killed" in output
    # In flight: it stays RUNNING until the rescuer finds the worker's heartbeat silent.
    assert TaskRecord.objects.get(name="long").state == TaskState.RUNNING
