"""An idle worker wakes for a committed add within tens of milliseconds on every database,
without waiting for its poll (POLL_INTERVAL_SECONDS stays at 1 s), and idles cheaply."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import pytest

from django_taskqueue.taskqueue import Queue, Task

from ..conftest import REPO_ROOT
from ..handlers import RECORD_ENV

pytestmark = pytest.mark.django_db(transaction=True)


def start_idle_worker(child_env, tmp_path):
    record = tmp_path / "record.jsonl"
    env = {**child_env, RECORD_ENV: str(record)}
    env["TASKQUEUE_TEST_OVERRIDES"] = json.dumps({"POLL_INTERVAL_SECONDS": 1})
    log = (tmp_path / "log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "django", "runtaskworker", "--queue", "default", "--no-cron"],
        env=env,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc, record, tmp_path / "log"


def wait_for(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")


def handled(record):
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines() if line]


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid):
    """User + system CPU time of `pid` (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_idle_worker_wakes_for_an_add_without_waiting_for_its_poll(child_env, tmp_path):
    proc, record, log = start_idle_worker(child_env, tmp_path)
    try:
        Queue("default").add(Task(method="GET", name="warm", url="/echo"))
        wait_for(lambda: len(handled(record)) == 1, what="the worker to start")
        latencies = []
        for i in range(7):
            time.sleep(0.3)  # idle again: the worker is asleep in its poll
            added = time.time()
            Queue("default").add(Task(method="GET", name=f"t{i}", url="/echo"))
            wait_for(lambda i=i: len(handled(record)) == i + 2, what=f"task {i} to run")
            latencies.append(handled(record)[-1]["started"] - added)
    finally:
        stop(proc)
    # Polling alone would give a median of about half of POLL_INTERVAL_SECONDS (1 s).
    print("wake latencies", sorted(round(x * 1000) for x in latencies))
    assert statistics.median(latencies) < 0.3, (latencies, log.read_text(errors="replace"))


def test_an_idle_worker_uses_little_cpu(child_env, tmp_path):
    proc, record, log = start_idle_worker(child_env, tmp_path)
    try:
        Queue("default").add(Task(method="GET", name="warm", url="/echo"))
        wait_for(lambda: len(handled(record)) == 1, what="the worker to start")
        time.sleep(1.5)  # the success is written; start-up is over
        before, started = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(4)
        used = (cpu_seconds(proc.pid) - before) / (time.monotonic() - started)
    finally:
        stop(proc)
    print("idle cpu", round(used * 100, 2), "% of a core")
    assert used < 0.05, (used, log.read_text(errors="replace"))
