"""A dead worker is found, not waited out: kill -9 mid-drain, a second SIGTERM, a poison task.

Real `runtaskworker` processes on the test database. The kill test runs with the default
heartbeat settings, because the bound it checks (a dead worker's tasks back in their queue
within 30 s) is the defaults' promise; the others shorten the heartbeat to stay quick.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from django_taskqueue.models import TaskRecord, TaskState, WorkerHeartbeat
from django_taskqueue.taskqueue import Queue, Task

from ..handlers import RECORD_ENV
from .faults import FAST_HEARTBEAT, entries, start_worker, task_name, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

#: The bound of the defaults: WORKER_TIMEOUT_SECONDS (20) + RESCUE_INTERVAL_SECONDS (5), and
#: a few seconds for a loaded machine.
RESCUE_BOUND_SECONDS = 30


@pytest.fixture
def fault_env(child_env, tmp_path):
    record = tmp_path / "record.jsonl"
    child_env[RECORD_ENV] = str(record)
    return child_env, record, tmp_path


def overrides(env: dict[str, str], **values: object) -> None:
    env["TASKQUEUE_TEST_OVERRIDES"] = json.dumps(values)


def running_under(worker_id: str) -> int:
    return TaskRecord.objects.filter(state=TaskState.RUNNING, worker_id=worker_id).count()


def test_kill_9_mid_drain_loses_nothing_charges_only_started_tasks_and_recovers_in_30_s(
    fault_env,
):
    env, record, tmp = fault_env
    overrides(env, POLL_INTERVAL_SECONDS=0.1)  # the heartbeat, timeout and rescue defaults
    names = [f"k{i:02}" for i in range(40)]
    Queue("fast").add([Task(method="GET", name=n, url="/sleep?seconds=0.25&mark=1") for n in names])
    args = ["--queue", "fast", "--concurrency", "2", "--prefetch", "20"]
    doomed = start_worker(env, tmp / "doomed.log", *args, "--worker-id", "doomed")
    try:
        wait_for(lambda: len(entries(record, "finished")) >= 6, 120, "a few tasks to run")
        doomed.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        doomed.wait(timeout=10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
    started_by_doomed = {task_name(e) for e in entries(record, "started")}
    held = running_under("doomed")
    assert held > len(started_by_doomed) - 6 >= 0  # it held tasks it never started
    assert WorkerHeartbeat.objects.filter(worker_id="doomed").exists()

    heir = start_worker(env, tmp / "heir.log", *args, "--worker-id", "heir")
    try:
        wait_for(lambda: running_under("doomed") == 0, 90, "the dead worker's tasks to return")
        rescued_after = time.monotonic() - killed_at
        wait_for(
            lambda: TaskRecord.objects.filter(state=TaskState.SUCCEEDED).count() == 40,
            120,
            "every task to succeed",
        )
    finally:
        heir.send_signal(signal.SIGTERM)
        heir.wait(timeout=60)
    log = (tmp / "heir.log").read_text()
    rows = {r.name: r for r in TaskRecord.objects.all()}
    never_started = [n for n in names if n not in started_by_doomed]
    charged = [n for n in names if rows[n].retry_count]
    print(
        f"held {held} at the kill, {len(started_by_doomed)} started; all back "
        f"{rescued_after:.1f} s after the kill; charged {len(charged)}: {charged}"
    )
    assert rescued_after <= RESCUE_BOUND_SECONDS, log
    # 0 lost: each ran to its end at least once, and each succeeded.
    assert {task_name(e) for e in entries(record, "finished")} == set(names)
    # Never started: never charged.
    for name in never_started:
        assert rows[name].retry_count == 0, (name, rows[name].errors)
        assert rows[name].errors == []
    assert set(charged) <= started_by_doomed
    assert "event=worker_lost worker=doomed" in log
    assert not WorkerHeartbeat.objects.filter(worker_id="doomed").exists()
    assert not WorkerHeartbeat.objects.exists()  # the heir's row went with its clean exit


def test_a_second_sigterm_gives_back_the_unstarted_tasks_before_exiting(fault_env):
    env, record, tmp = fault_env
    overrides(env, **FAST_HEARTBEAT)
    Queue("fast").add(Task(method="GET", name="long", url="/sleep?seconds=30&first=1&mark=1"))
    time.sleep(0.01)  # the others' ETAs come after: claimed behind it
    Queue("fast").add([Task(method="GET", name=f"e{i}", url="/echo") for i in range(10)])
    args = ["--queue", "fast", "--concurrency", "1", "--prefetch", "20"]
    proc = start_worker(env, tmp / "first.log", *args, "--worker-id", "first")
    try:
        wait_for(lambda: entries(record, "started"), 60, "the long task to start")
        time.sleep(0.5)  # announced by a heartbeat as started
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp / "first.log").read_text()
    assert proc.returncode != 0, log
    assert "released=10 of=10" in log, log
    waiting = TaskRecord.objects.filter(name__startswith="e")
    assert [(t.state, t.retry_count, t.worker_id) for t in waiting] == [
        (TaskState.QUEUED, 0, None)
    ] * 10
    # The attempt in flight is the heartbeat's: back within seconds, charged once.
    assert TaskRecord.objects.get(name="long").state == TaskState.RUNNING
    heir = start_worker(env, tmp / "heir.log", *args, "--worker-id", "heir")
    try:
        wait_for(
            lambda: TaskRecord.objects.filter(state=TaskState.SUCCEEDED).count() == 11,
            60,
            "every task to succeed",
        )
    finally:
        heir.send_signal(signal.SIGTERM)
        heir.wait(timeout=60)
    long = TaskRecord.objects.get(name="long")
    assert long.retry_count == 1
    assert long.errors[0]["reason"] == "worker lost"
    assert all(t.retry_count == 0 for t in TaskRecord.objects.filter(name__startswith="e"))


def test_a_task_that_kills_its_worker_every_time_fails_after_the_loss_limit(fault_env):
    env, record, tmp = fault_env
    overrides(env, **FAST_HEARTBEAT, MAX_WORKER_LOSSES=3)
    Queue("fast").add(Task(method="GET", name="poison", url="/die"))

    def poison() -> TaskRecord:
        return TaskRecord.objects.get(name="poison")

    workers = 0
    while poison().state != TaskState.FAILED:
        workers += 1
        assert workers <= 5, "the poison task is still live after 5 workers"
        proc = start_worker(env, tmp / f"w{workers}.log", "--queue", "fast")
        try:
            wait_for(
                lambda p=proc: p.poll() is not None or poison().state == TaskState.FAILED,
                90,
                "the worker to die or the task to fail",
            )
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    task = poison()
    assert task.lost_count == 3
    assert task.last_error == "worker lost 3 times"
    assert len(entries(record, "started")) == 3  # it ran three times, never a fourth
    assert workers == 4  # three killed, the fourth found it failed
