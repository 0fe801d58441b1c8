"""The admin dashboard: queue statistics and actions, task details, on every database."""

import datetime

import pytest
from django.contrib import admin
from django.urls import reverse

from django_taskqueue import taskqueue
from django_taskqueue.models import QueueState, TaskRecord, TaskState
from django_taskqueue.taskqueue import Queue, Task

pytestmark = pytest.mark.django_db

QUEUES_URL = reverse("admin:django_taskqueue_queuestate_changelist")
TASKS_URL = reverse("admin:django_taskqueue_taskrecord_changelist")


def act(client, url, action, pks):
    return client.post(url, {"action": action, "_selected_action": pks}, follow=True)


def test_queue_list_shows_every_configured_queue_with_figures(admin_client):
    taskqueue.add(url="/x")
    taskqueue.add(url="/x", countdown=600)
    Queue("pull-queue").add(Task(b"p", method="PULL"))
    Queue("pull-queue").lease_tasks(60, 1)
    response = admin_client.get(QUEUES_URL)
    assert response.status_code == 200
    rows = {obj.name: obj for obj in response.context["cl"].result_list}
    assert {"default", "fast", "pull-queue", "paused"} <= set(rows)
    assert rows["default"].waiting == 1
    assert rows["default"].oldest is not None
    assert rows["pull-queue"].leased == 1
    assert rows["pull-queue"].last_minute == 1
    content = response.content.decode()
    assert "5/s, bucket 5" in content


def test_pause_and_resume_actions(admin_client):
    admin_client.get(QUEUES_URL)
    act(admin_client, QUEUES_URL, "pause", ["pull-queue"])
    assert Queue("pull-queue").is_paused()
    act(admin_client, QUEUES_URL, "resume", ["pull-queue"])
    assert not Queue("pull-queue").is_paused()


def test_purge_action_tombstones(admin_client):
    taskqueue.add(url="/x", name="gone")
    admin_client.get(QUEUES_URL)
    act(admin_client, QUEUES_URL, "purge", ["default"])
    assert TaskRecord.objects.get(name="gone").state == TaskState.DELETED


def test_run_now_and_retry_failed(admin_client):
    later = taskqueue.add(url="/x", countdown=3600)
    failed = taskqueue.add(url="/x")
    TaskRecord.objects.filter(name=failed.name).update(
        state=TaskState.FAILED, retry_count=5, last_error="boom"
    )
    admin_client.get(QUEUES_URL)
    act(admin_client, QUEUES_URL, "run_now", ["default"])
    assert TaskRecord.objects.get(name=later.name).eta < later.eta
    act(admin_client, QUEUES_URL, "retry_failed", ["default"])
    row = TaskRecord.objects.get(name=failed.name)
    assert (row.state, row.retry_count) == (TaskState.QUEUED, 0)


def test_task_detail_shows_payload_headers_and_errors(admin_client):
    task = taskqueue.add(url="/x", payload="hello payload", headers={"X-Mine": "1"})
    TaskRecord.objects.filter(name=task.name).update(
        last_error="Traceback: it broke", errors=[{"exception_class_path": "builtins.TypeError"}]
    )
    pk = TaskRecord.objects.get(name=task.name).pk
    content = admin_client.get(
        reverse("admin:django_taskqueue_taskrecord_change", args=[pk])
    ).content.decode()
    for expected in ("hello payload", "X-Mine: 1", "Traceback: it broke", "builtins.TypeError"):
        assert expected in content


def test_task_actions(admin_client):
    keep = taskqueue.add(url="/x", name="keep")
    drop = taskqueue.add(url="/x", name="drop")
    pk = TaskRecord.objects.get(name=drop.name).pk
    act(admin_client, TASKS_URL, "delete_tasks", [pk])
    assert TaskRecord.objects.get(name="drop").state == TaskState.DELETED
    assert TaskRecord.objects.get(name=keep.name).state == TaskState.QUEUED
    with pytest.raises(taskqueue.TombstonedTaskError):
        taskqueue.add(url="/x", name="drop")


def test_tasks_cannot_be_added_or_deleted_as_rows(admin_client):
    # Deleting a row would free its name: the delete action tombstones instead.
    task = taskqueue.add(url="/x")
    pk = TaskRecord.objects.get(name=task.name).pk
    assert admin_client.get(reverse("admin:django_taskqueue_taskrecord_add")).status_code == 403
    delete_url = reverse("admin:django_taskqueue_taskrecord_delete", args=[pk])
    assert admin_client.get(delete_url).status_code == 403
    admin_client.get(QUEUES_URL)
    queue_delete = reverse("admin:django_taskqueue_queuestate_delete", args=["default"])
    assert admin_client.get(queue_delete).status_code == 403
    assert QueueState.objects.filter(name="default").exists()


def test_times_read_right(admin_client, frozen_clock):
    """Times to the second with how far off they are; a finished task shows no ETA."""
    from django_taskqueue.admin import TaskAdmin, error_summary, when

    done = taskqueue.add(url="/x", name="done")
    waiting = taskqueue.add(url="/x", name="waiting", countdown=90)
    # A succeeded task keeps its last lease expiry in `eta`: ten minutes ahead.
    TaskRecord.objects.filter(name=done.name).update(
        state=TaskState.SUCCEEDED,
        eta=frozen_clock.now() + datetime.timedelta(minutes=10),
        finished_at=frozen_clock.now() - datetime.timedelta(seconds=5),
    )
    task_admin = TaskAdmin(TaskRecord, admin.site)
    done_row = TaskRecord.objects.get(name=done.name)
    assert task_admin.eta_display(done_row) == "-"
    assert "(5 s ago)" in task_admin.finished_display(done_row)
    eta = task_admin.eta_display(TaskRecord.objects.get(name=waiting.name))
    assert "(in 1 min)" in eta
    # 2025-01-15 12:01:30 UTC in the suite's time zone (America/New_York), to the second.
    assert "2025-01-15 07:01:30" in eta
    assert when(None) == "-"
    content = admin_client.get(TASKS_URL).content.decode()
    assert "07:01:30" in content and "(in 1 min)" in content
    assert "2025-01-15 07:10:00" not in content  # the stale lease of the finished task
    assert error_summary("Traceback (most recent call last):\n  ...\nValueError: bad") == (
        "ValueError: bad"
    )
    assert error_summary("HTTP 404 Not Found: no view answers /x") == (
        "HTTP 404 Not Found: no view answers /x"
    )
