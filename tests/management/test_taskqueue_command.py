"""`manage.py taskqueue`: stats, list and the queue actions, on every database."""

import json
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from django_taskqueue import taskqueue
from django_taskqueue.models import TaskRecord, TaskState
from django_taskqueue.queues import all_queue_configs
from django_taskqueue.taskqueue import Queue, Task
from django_taskqueue.testing import run_tasks

from ..conftest import REPO_ROOT

pytestmark = pytest.mark.django_db


def run(*args):
    out = StringIO()
    call_command("taskqueue", *args, stdout=out)
    return out.getvalue()


def test_stats_table_and_json(frozen_clock):
    taskqueue.add(url="/echo")
    taskqueue.add(url="/boom", retry_options=taskqueue.TaskRetryOptions(task_retry_limit=0))
    run_tasks("default")
    taskqueue.add(url="/echo")
    frozen_clock.advance(125)
    Queue("pull-queue").add(Task(b"p", method="PULL"))
    text = run("stats")
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["queue", "mode", "state", "waiting"]
    default = next(line for line in lines if line.startswith("default "))
    assert "2 minutes 5 seconds" in default
    assert "/ 5/s" in default
    assert len(lines) == 2 + len(all_queue_configs())
    data = {row["queue"]: row for row in json.loads(run("stats", "--json"))}
    assert data["default"]["waiting"] == 1
    assert data["default"]["oldest_waiting_seconds"] == 125
    assert data["default"]["executed_last_hour"] == 2
    assert data["default"]["failed_last_hour"] == 1
    assert data["pull-queue"]["waiting"] == 1
    assert data["pull-queue"]["running"] is None
    assert data["paused"]["paused"] is True
    only = json.loads(run("stats", "--json", "--queue", "fast"))
    assert [row["queue"] for row in only] == ["fast"]


def test_list_with_filters():
    queue = Queue("pull-queue")
    queue.add([Task(b"a", method="PULL", tag="red", name=f"red-{i}") for i in range(3)])
    queue.add([Task(b"b", method="PULL", tag="blue", name=f"blue-{i}") for i in range(2)])
    queue.delete_tasks_by_name("red-0")
    assert len(run("list", "pull-queue").splitlines()) == 2 + 4
    names = [r["name"] for r in json.loads(run("list", "pull-queue", "--tag", "red", "--json"))]
    assert sorted(names) == ["red-1", "red-2"]
    rows = json.loads(run("list", "pull-queue", "--name-prefix", "blue", "--limit", "1", "--json"))
    assert len(rows) == 1 and rows[0]["name"].startswith("blue-")
    deleted = json.loads(run("list", "pull-queue", "--state", "deleted", "--json"))
    assert [r["name"] for r in deleted] == ["red-0"]
    assert len(json.loads(run("list", "pull-queue", "--state", "all", "--json"))) == 5


def test_pause_resume():
    assert "Paused default, fast." in run("pause", "default", "fast")
    assert Queue("default").is_paused() and Queue("fast").is_paused()
    run("resume", "default")
    assert not Queue("default").is_paused() and Queue("fast").is_paused()


def test_purge_needs_yes():
    taskqueue.add(url="/echo")
    with pytest.raises(CommandError, match="--yes"):
        run("purge", "default")
    assert TaskRecord.objects.filter(state=TaskState.QUEUED).count() == 1
    run("purge", "default", "--yes")
    assert TaskRecord.objects.filter(state=TaskState.QUEUED).count() == 0


def test_retry_failed_and_run_now(frozen_clock):
    taskqueue.add(url="/boom", retry_options=taskqueue.TaskRetryOptions(task_retry_limit=0))
    run_tasks("default")
    assert "1 failed task(s) queued again." in run("retry-failed", "default")
    assert TaskRecord.objects.get().state == TaskState.QUEUED
    taskqueue.add(url="/echo", countdown=3600)
    assert "2 task(s) are due now." in run("run-now", "default")


def test_unknown_queue_is_a_clear_error():
    with pytest.raises(CommandError, match="Unknown queue"):
        run("pause", "nope")
    with pytest.raises(CommandError, match="Unknown queue"):
        run("list", "nope")


def test_from_the_shell(child_env):
    taskqueue.add(url="/echo")
    result = subprocess.run(
        [sys.executable, "-m", "django", "taskqueue", "stats", "--json", "--queue", "default"],
        cwd=REPO_ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["waiting"] == 1
    missing = subprocess.run(
        [sys.executable, "-m", "django", "taskqueue"],
        cwd=REPO_ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode != 0
    assert "stats" in missing.stderr
