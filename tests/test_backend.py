"""TaskQueueBackend: Django's Tasks framework used the documented way, on the push queues."""

from __future__ import annotations

import datetime
import json
import logging
import subprocess
import sys

import pytest
from asgiref.sync import async_to_sync
from django.core import checks
from django.db import transaction

from django_taskqueue import deferred
from django_taskqueue._tasks_compat import (
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultStatus,
    framework_signals,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)
from django_taskqueue.backends import TaskQueueBackend
from django_taskqueue.dispatch.direct import PermanentTaskFailure
from django_taskqueue.models import TaskRecord
from django_taskqueue.testing import run_tasks
from tests import task_functions as tasks
from tests.conftest import REPO_ROOT, run_burst_worker

READY, RUNNING = TaskResultStatus.READY, TaskResultStatus.RUNNING
SUCCESSFUL, FAILED = TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED

LIMITED_QUEUE = {
    "rate": "5/s",
    "retry_parameters": {"task_retry_limit": 2, "min_backoff_seconds": 1, "max_doublings": 2},
}


@pytest.fixture(autouse=True)
def _clean_calls():
    tasks.CALLS.clear()
    yield
    tasks.CALLS.clear()


@pytest.fixture
def limited(settings):
    """A push queue `limited` (2 retries, backoff 1 s then 2 s) served by the backend."""
    settings.TASKQUEUE = {**settings.TASKQUEUE, "QUEUES": {"limited": LIMITED_QUEUE}}
    settings.TASKS = {
        "default": {
            **settings.TASKS["default"],
            "QUEUES": ["default", "fast", "limited", "paused"],
        }
    }
    return "limited"


@pytest.fixture
def signals_sent():
    sent = []

    def receiver(signal_name):
        def receive(sender, task_result, **kwargs):
            sent.append((signal_name, sender, task_result.status, task_result.attempts))

        return receive

    receivers = [
        (signal, receiver(name))
        for signal, name in [
            (task_enqueued, "enqueued"),
            (task_started, "started"),
            (task_finished, "finished"),
        ]
    ]
    for signal, receive in receivers:
        signal.connect(receive)
    yield sent
    for signal, receive in receivers:
        signal.disconnect(receive)


def _row(result) -> TaskRecord:
    queue_name, _, name = result.id.partition(":")
    return TaskRecord.objects.get(queue_name=queue_name, name=name)


def test_backend_features():
    backend = task_backends["default"]
    assert isinstance(backend, TaskQueueBackend)
    assert backend.supports_defer and backend.supports_async_task
    assert backend.supports_get_result and backend.supports_priority


@pytest.mark.django_db
def test_enqueue_run_and_get_result():
    result = tasks.add.enqueue(2, 3)
    assert result.status == READY and not result.is_finished
    assert result.args == [2, 3] and result.kwargs == {}
    assert result.backend == "default" and result.task == tasks.add
    assert len(result.id) < 64
    row = _row(result)
    assert (row.queue_name, row.url) == ("default", "/_ah/queue/django-tasks")

    fetched = tasks.add.get_result(result.id)
    assert fetched.status == READY and fetched.attempts == 0
    assert fetched.task.func is tasks.add.func

    assert run_tasks() == 1
    result.refresh()
    assert result.status == SUCCESSFUL and result.is_finished
    assert result.return_value == 5
    assert result.attempts == 1 and result.errors == []
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at


@pytest.mark.django_db
def test_enqueue_follows_the_callers_transaction():
    with pytest.raises(RuntimeError), transaction.atomic():
        result = tasks.add.enqueue(1, 1)
        raise RuntimeError
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result(result.id)


@pytest.mark.django_db
def test_unknown_result_ids():
    backend = task_backends["default"]
    plain = deferred.defer(pow, 2, 2)
    for result_id in ["default:nope", "nope", "", f"default:{plain.name}", "pull-queue:x"]:
        with pytest.raises(TaskResultDoesNotExist):
            backend.get_result(result_id)
    with pytest.raises(TaskResultDoesNotExist):
        async_to_sync(backend.aget_result)("default:nope")


@pytest.mark.django_db
def test_async_enqueue_and_get_result():
    result = async_to_sync(tasks.add.aenqueue)(4, 5)
    run_tasks()
    fetched = async_to_sync(tasks.add.aget_result)(result.id)
    assert (fetched.status, fetched.return_value) == (SUCCESSFUL, 9)


@pytest.mark.django_db
def test_coroutine_function_runs():
    result = tasks.async_multiply.enqueue(6, 7)
    run_tasks()
    result.refresh()
    assert (result.status, result.return_value) == (SUCCESSFUL, 42)


@pytest.mark.django_db
def test_run_after_is_the_eta(frozen_clock):
    run_after = frozen_clock.now() + datetime.timedelta(minutes=5)
    result = tasks.add.using(run_after=run_after).enqueue(1, 2)
    assert _row(result).eta == run_after
    assert tasks.add.get_result(result.id).task.run_after == run_after
    assert run_tasks() == 0
    frozen_clock.advance(299)
    assert run_tasks() == 0
    assert tasks.add.get_result(result.id).status == READY
    frozen_clock.advance(1)
    assert run_tasks() == 1
    assert tasks.add.get_result(result.id).return_value == 3


@pytest.mark.django_db
def test_priority_orders_due_tasks(frozen_clock):
    later = frozen_clock.now() + datetime.timedelta(seconds=30)
    tasks.record.using(priority=-5).enqueue("low")
    ten = tasks.record.enqueue("ten")  # the decorator's priority=10
    tasks.record.using(priority=100, run_after=later).enqueue("highest, not due")
    tasks.record.using(priority=0).enqueue("zero")
    tasks.record.using(priority=50).enqueue("high")
    assert _row(ten).priority == 10 and tasks.record.get_result(ten.id).task.priority == 10

    assert run_tasks() == 4
    assert tasks.CALLS == ["high", "ten", "zero", "low"]
    frozen_clock.advance(30)
    run_tasks()
    assert tasks.CALLS[-1] == "highest, not due"


@pytest.mark.django_db
def test_the_frameworks_own_log_lines_follow_its_logger(frozen_clock, limited, caplog):
    # With no receiver but the framework's own log receivers, the signals are sent only when
    # its logger would log them: at INFO for a start and a success, at ERROR for a failure.
    name = framework_signals.logger.name

    def lines():
        found = [r for r in caplog.records if r.name == name]
        caplog.clear()
        return [(r.levelname, r.getMessage().rpartition("state=")[2]) for r in found]

    with caplog.at_level(logging.WARNING, logger=name):
        tasks.add.enqueue(1, 2)
        assert run_tasks() == 1
        assert lines() == []
        result = tasks.always_fails.using(queue_name=limited).enqueue("boom")
        for _ in range(3):
            assert run_tasks() == 1
            frozen_clock.advance(2)
        assert lines() == [("ERROR", str(FAILED))]
        result.refresh()
        assert (result.status, result.attempts, len(result.errors)) == (FAILED, 3, 3)
    with caplog.at_level(logging.INFO, logger=name):
        ok = tasks.add.enqueue(2, 2)
        assert run_tasks() == 1
        assert lines() == [("INFO", str(RUNNING)), ("INFO", str(SUCCESSFUL))]
    assert tasks.add.get_result(ok.id).return_value == 4


@pytest.mark.django_db
def test_retries_with_backoff_then_fails_for_good(frozen_clock, limited, signals_sent):
    result = tasks.always_fails.using(queue_name=limited).enqueue("boom")
    assert run_tasks() == 1
    result.refresh()
    assert (result.status, result.attempts, len(result.errors)) == (READY, 1, 1)
    assert _row(result).eta == frozen_clock.now() + datetime.timedelta(seconds=1)
    frozen_clock.advance(1)
    assert run_tasks() == 1
    assert _row(result).eta == frozen_clock.now() + datetime.timedelta(seconds=2)
    frozen_clock.advance(1)
    assert run_tasks() == 0  # backing off
    frozen_clock.advance(1)
    assert run_tasks() == 1

    result.refresh()
    assert (result.status, result.attempts, result.is_finished) == (FAILED, 3, True)
    assert [error.exception_class for error in result.errors] == [ValueError] * 3
    assert all("ValueError: boom" in error.traceback for error in result.errors)
    assert result.finished_at == frozen_clock.now()
    with pytest.raises(ValueError, match="failed"):
        _ = result.return_value

    statuses = [(name, status, attempts) for name, _, status, attempts in signals_sent]
    assert statuses == [
        ("enqueued", READY, 0),
        ("started", RUNNING, 1),
        ("started", RUNNING, 2),
        ("started", RUNNING, 3),
        ("finished", FAILED, 3),
    ]
    assert all(sender is TaskQueueBackend for _, sender, _, _ in signals_sent)


@pytest.mark.django_db
def test_queue_directives_apply(limited):
    """The backend's queues are push queues: a paused one (rate 0) dispatches nothing."""
    result = tasks.add.using(queue_name="paused").enqueue(1, 2)
    assert run_tasks() == 0
    assert tasks.add.get_result(result.id).status == READY


@pytest.mark.django_db
def test_signals_on_success(signals_sent):
    result = tasks.add.enqueue(1, 2)
    run_tasks()
    assert [(name, status, attempts) for name, _, status, attempts in signals_sent] == [
        ("enqueued", READY, 0),
        ("started", RUNNING, 1),
        ("finished", SUCCESSFUL, 1),
    ]
    assert result.id


@pytest.mark.django_db
def test_context_gives_the_attempt_number(frozen_clock):
    result = tasks.second_time_lucky.enqueue("ctx")
    run_tasks()
    result.refresh()
    assert result.status == READY
    assert result.errors[0].exception_class is RuntimeError
    frozen_clock.advance(1)
    run_tasks()
    result.refresh()
    assert result.status == SUCCESSFUL
    # What the task saw of itself, from the claim, is what the row says.
    assert result.return_value == {
        "attempt": 2,
        "id": result.id,
        "enqueued_at": result.enqueued_at.isoformat(),
        "started_at": result.started_at.isoformat(),
        "errors": ["builtins.RuntimeError"],
        "status": "RUNNING",
    }


@pytest.mark.django_db
def test_return_value_must_be_json():
    result = tasks.returns_a_set.enqueue()
    run_tasks()
    result.refresh()
    assert (result.status, result.attempts) == (FAILED, 1)
    assert result.errors[0].exception_class is PermanentTaskFailure
    assert "not JSON" in result.errors[0].traceback


@pytest.mark.django_db
def test_invalid_tasks(settings, frozen_clock):
    with pytest.raises(InvalidTask):
        tasks.add.using(queue_name="pull-queue")  # not in QUEUES
    with pytest.raises(TypeError):
        tasks.add.enqueue(object(), 1)
    too_late = frozen_clock.now() + datetime.timedelta(days=31)
    with pytest.raises(InvalidTask, match="ETA"):
        tasks.add.using(run_after=too_late).enqueue(1, 2)
    settings.TASKS = {"default": {**settings.TASKS["default"], "QUEUES": []}}
    with pytest.raises(InvalidTask, match="pull"):
        tasks.add.using(queue_name="pull-queue").enqueue(1, 2)
    with pytest.raises(InvalidTask, match="nope"):
        tasks.add.using(queue_name="nope").enqueue(1, 2)
    assert not TaskRecord.objects.exists()


def test_check_reports_queues_that_are_not_push_queues():
    backend = TaskQueueBackend("other", {"QUEUES": ["default", "pull-queue", "missing"]})
    messages = backend.check()
    assert [(m.id, m.msg) for m in messages] == [
        (
            "django_taskqueue.E021",
            "Queue 'missing' of the task backend 'other' is not a queue of TASKQUEUE.",
        ),
        (
            "django_taskqueue.E021",
            "Queue 'pull-queue' of the task backend 'other' is a pull queue.",
        ),
    ]
    assert TaskQueueBackend("ok", {"QUEUES": ["default", "fast"]}).check() == []


def test_check_runs_with_the_system_checks(settings):
    settings.TASKS = {
        "default": {
            "BACKEND": "django_taskqueue.backends.TaskQueueBackend",
            "QUEUES": ["pull-queue"],
        }
    }
    # The framework's check_tasks, as registered with Django's system checks.
    [check_tasks] = [
        c for c in checks.registry.registry.get_checks() if c.__name__ == "check_tasks"
    ]
    ids = [message.id for message in check_tasks()]
    assert ids == ["django_taskqueue.E021"]


def test_check_reports_the_app_missing(settings):
    settings.INSTALLED_APPS = [app for app in settings.INSTALLED_APPS if app != "django_taskqueue"]
    messages = TaskQueueBackend("default", {"QUEUES": ["default"]}).check()
    assert [m.id for m in messages] == ["django_taskqueue.E020"]


_READ_RESULT = """
import json, sys
import django
django.setup()
from tests.task_functions import add
result = add.get_result(sys.argv[1])
print(json.dumps([result.status, result.return_value, result.attempts, result.is_finished]))
"""


def test_results_are_visible_from_another_process(child_env):
    result = tasks.add.enqueue(20, 22)
    run_burst_worker(child_env, "default")
    result.refresh()
    assert (result.status, result.return_value) == (SUCCESSFUL, 42)

    reader = subprocess.run(
        [sys.executable, "-c", _READ_RESULT, result.id],
        cwd=REPO_ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert reader.returncode == 0, reader.stderr
    assert json.loads(reader.stdout) == ["SUCCESSFUL", 42, 1, True]
