"""A database restart and a 30 s outage, seen by one worker through a proxy the test cuts.

The proxy sits between the worker and the database server, so the outage hits only this
worker (other processes share the server). SQLite has no server to lose: an embedded
database is never away while its process lives, so these tests say so and skip there.
"""

from __future__ import annotations

import json
import signal
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection

from django_taskqueue.models import TaskRecord, TaskState
from django_taskqueue.taskqueue import Queue, Task

from ..handlers import RECORD_ENV
from .faults import CuttableProxy, entries, start_worker, task_name, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TASKS = 30
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}


@pytest.fixture
def proxy():
    if connection.vendor not in DEFAULT_PORTS:
        pytest.skip(
            f"{connection.vendor} has no database server: an embedded database cannot be "
            "restarted or cut off from a living worker"
        )
    settings = connection.settings_dict
    cut = CuttableProxy(
        settings.get("HOST") or "127.0.0.1",
        int(settings.get("PORT") or DEFAULT_PORTS[connection.vendor]),
    )
    yield cut
    cut.close()


@pytest.mark.parametrize("outage_seconds", [3, 30], ids=["restart", "outage-30s"])
def test_a_database_outage_loses_nothing_and_strands_nothing(
    child_env, tmp_path, proxy, outage_seconds
):
    record = tmp_path / "record.jsonl"
    env = dict(child_env)
    env[RECORD_ENV] = str(record)
    env["TASKQUEUE_TEST_OVERRIDES"] = json.dumps({"POLL_INTERVAL_SECONDS": 0.1})
    url = urlsplit(env["DATABASE_URL"])
    userinfo = url.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{proxy.port}" if userinfo else f"127.0.0.1:{proxy.port}"
    env["DATABASE_URL"] = urlunsplit(url._replace(netloc=netloc))
    names = [f"o{i:02}" for i in range(TASKS)]
    Queue("fast").add([Task(method="GET", name=n, url="/sleep?seconds=0.2") for n in names])
    log = tmp_path / "worker.log"
    proc = start_worker(env, log, "--queue", "fast", "--concurrency", "1", "--prefetch", "20")
    try:
        wait_for(lambda: len(entries(record, "finished")) >= 3, 120, "a few tasks to run")
        proxy.cut()
        time.sleep(outage_seconds)
        held = TaskRecord.objects.filter(state=TaskState.RUNNING).count()
        proxy.restore()
        back_at = time.monotonic()
        wait_for(
            lambda: TaskRecord.objects.filter(state=TaskState.SUCCEEDED).count() == TASKS,
            180,
            "every task to succeed",
        )
        done_after = time.monotonic() - back_at
        assert proc.poll() is None, log.read_text()  # it never gave up
        assert not TaskRecord.objects.filter(state=TaskState.RUNNING).exists()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log.read_text()
    print(
        f"{held} RUNNING during the outage; all {TASKS} succeeded {done_after:.1f} s after "
        f"the database came back; released {output.count('event=released')} unstarted"
    )
    assert proc.returncode == 0, output
    assert "event=database_error" in output or "event=heartbeat_failed" in output
    assert {task_name(e) for e in entries(record, "finished")} == set(names)
