"""A backend of Django's Tasks framework whose queues are the push queues of `TASKQUEUE`.

    TASKS = {
        "default": {
            "BACKEND": "django_taskqueue.backends.TaskQueueBackend",
            "QUEUES": ["default", "mail"],   # push queues of queue.yaml / TASKQUEUE["QUEUES"]
        }
    }

Each enqueued call is a push task of its queue (`/_ah/queue/django-tasks`), so the queue's rate,
bucket, `max_concurrent_requests` and retry parameters apply, and `runtaskworker` runs it as a
direct Python call. `run_after` is the task's ETA, `priority` orders due tasks within a queue,
coroutine functions run, `takes_context` gets the attempt number, and results are the task rows,
readable from any process until the sweep prunes them.
"""

from __future__ import annotations

import logging
import threading
import traceback as traceback_module
from functools import lru_cache
from typing import Any

from django.apps import apps
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.dateparse import parse_datetime
from django.utils.module_loading import import_string

from . import callables, clock, results, taskqueue
from ._tasks_compat import (
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    framework_signals,
    normalize_json,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)
from .dispatch import direct
from .dispatch.direct import DJANGO_TASKS_URL
from .models import TaskState
from .signals import task_attempt_finished

__all__ = ["TaskQueueBackend", "run"]

#: Check ids, reported by `TaskQueueBackend.check()` through Django's `check_tasks`.
E_NOT_INSTALLED = "django_taskqueue.E020"
E_NOT_A_PUSH_QUEUE = "django_taskqueue.E021"


class TaskQueueBackend(BaseTaskBackend):
    """Django's Tasks framework on the push queues of django-taskqueue."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Add a push task that calls `task` with the arguments; return its READY result.

        Inside `transaction.atomic()` on the queue's database the task is part of the
        transaction. Raises `InvalidTask` for a task the queue cannot take (unknown or pull
        queue, `run_after` more than 30 days ahead) and `TypeError` for arguments that are not
        JSON.
        """
        self.validate_task(task)
        args, kwargs = normalize_json(list(args)), normalize_json(dict(kwargs))
        payload = callables.encode_json(
            b"task",
            {
                "task": task.module_path,
                "args": args,
                "kwargs": kwargs,
                "backend": self.alias,
                "takes_context": task.takes_context,
                "priority": task.priority,
                "run_after": task.run_after.isoformat() if task.run_after else None,
            },
        )
        options = {
            "url": DJANGO_TASKS_URL,
            "eta": task.run_after,
            "headers": {"Content-Type": "application/octet-stream"},
        }
        try:
            try:
                queued = taskqueue.Task(payload=payload, **options)
            except taskqueue.TaskTooLargeError:
                # Large arguments stay in the row, added in the caller's transaction.
                queued = taskqueue.Task(payload=payload, _size_check=False, **options)
            queued._priority = task.priority
            taskqueue.Queue(task.queue_name).add(queued)
        except (
            taskqueue.InvalidTaskError,
            taskqueue.UnknownQueueError,
            taskqueue.InvalidQueueModeError,
            taskqueue.InvalidQueueNameError,
        ) as e:
            raise InvalidTask(str(e)) from e
        result: TaskResult[..., Any] = TaskResult(
            task=task,
            id=f"{task.queue_name}:{queued.name}",
            status=TaskResultStatus.READY,
            enqueued_at=clock.now(),
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        """Return the result `result_id` as it is now; raise `TaskResultDoesNotExist`."""
        queue_name, _, name = str(result_id).partition(":")
        row = results.read_row(queue_name, name) if name else None
        if row is None or row["url"] != DJANGO_TASKS_URL:
            raise TaskResultDoesNotExist(result_id)
        try:
            call = callables.decode_json(row["payload"], b"task")
        except callables.PayloadError as e:
            raise TaskResultDoesNotExist(result_id) from e
        if call.get("backend") != self.alias:
            raise TaskResultDoesNotExist(result_id)
        try:
            task = self._task(call, queue_name)
        except (ImportError, InvalidTask) as e:
            raise TaskResultDoesNotExist(f"{result_id}: {e}") from e
        return _result(task, call, row, self.alias)

    def _task(self, call: dict[str, Any], queue_name: str) -> Task:
        """Return the `Task` of a stored call, with the options it was enqueued with."""
        return _stored_task(
            type(self),
            self.alias,
            call["task"],
            call["priority"],
            queue_name,
            call.get("run_after"),
            call["takes_context"],
        )

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        """Report the app missing from INSTALLED_APPS (E020) and queues that are not push (E021)."""
        messages: list[checks.CheckMessage] = list(super().check(**kwargs))
        if not apps.is_installed("django_taskqueue"):
            return [
                *messages,
                checks.Error(
                    f"The task backend {self.alias!r} needs django_taskqueue in INSTALLED_APPS.",
                    hint='Add "django_taskqueue" to INSTALLED_APPS and run migrate.',
                    id=E_NOT_INSTALLED,
                ),
            ]
        for name in sorted(self.queues):
            try:
                problem = "a pull queue" if taskqueue.Queue(name).config.is_pull else None
            except taskqueue.Error:
                problem = "not a queue of TASKQUEUE"
            except ImproperlyConfigured:
                # The queue configuration itself is broken: django_taskqueue's own checks
                # (E003-E005) say how; no queue can be judged until it is fixed.
                break
            if problem is not None:
                messages.append(
                    checks.Error(
                        f"Queue {name!r} of the task backend {self.alias!r} is {problem}.",
                        hint="List push queues of queue.yaml or TASKQUEUE['QUEUES'] in "
                        f"TASKS[{self.alias!r}]['QUEUES'].",
                        id=E_NOT_A_PUSH_QUEUE,
                    )
                )
        return messages


@lru_cache(maxsize=256)
def _stored_task(
    backend_class: type[TaskQueueBackend],
    alias: str,
    path: str,
    priority: int,
    queue_name: str,
    run_after: str | None,
    takes_context: bool,
) -> Task:
    # Kept: a worker runs the same few tasks over and over, and importing the function and
    # building (validating) its Task again for every call cost as much as the call itself.
    # Tasks are frozen, so one object serves every call with the same options.
    found = import_string(path)
    when = parse_datetime(run_after) if run_after else None
    if isinstance(found, Task):
        return found.using(priority=priority, queue_name=queue_name, run_after=when, backend=alias)
    return backend_class.task_class(
        func=found,
        priority=priority,
        backend=alias,
        queue_name=queue_name,
        run_after=when,
        takes_context=takes_context,
    )


def _result(task: Task, call: dict[str, Any], row: dict[str, Any], alias: str) -> TaskResult:
    found = results.from_row(row)
    result: TaskResult[..., Any] = TaskResult(
        task=task,
        id=found.id,
        status=TaskResultStatus(found.status.value),
        enqueued_at=found.enqueued_at,
        started_at=found.started_at,
        last_attempted_at=found.last_attempted_at,
        finished_at=found.finished_at,
        args=call["args"],
        kwargs=call["kwargs"],
        backend=alias,
        errors=[
            TaskError(exception_class_path=e.exception_class_path, traceback=e.traceback)
            for e in found.errors
        ],
        # Attempts are len(worker_ids); the row keeps the last worker's id only.
        worker_ids=[row["worker_id"] or ""] * found.attempts,
    )
    if found.status == results.ResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", row["return_value"])
    return result


# -- the worker's side -----------------------------------------------------------------------


class _Attempt:
    """A Django task's attempt running in this process: what `task_finished` needs once the
    worker has decided the outcome (retry or not).

    The RUNNING `TaskResult` is built when someone needs it: a receiver of `task_started`, the
    task's context, or `task_finished` with someone to tell.
    """

    __slots__ = ("alias", "call", "result", "sender", "stored", "task", "value")

    def __init__(
        self,
        sender: type[BaseTaskBackend],
        task: Task,
        stored: dict[str, Any],
        call: direct.DirectCall,
        alias: str,
    ) -> None:
        self.sender = sender
        self.task = task
        self.stored = stored
        self.call = call
        self.alias = alias
        self.result: TaskResult | None = None
        self.value: Any = None

    def task_result(self) -> TaskResult:
        if self.result is None:
            self.result = _running_result(self.task, self.stored, self.call, self.alias)
            object.__setattr__(self.result, "_return_value", self.value)
        return self.result


# Attempts running in this process, by task id.
_running: dict[int, _Attempt] = {}
_running_lock = threading.Lock()

#: The backends the worker ran tasks of, by alias: `task_backends[alias]` looks its backend up
#: through a context-local store on every call. Forgotten when the TASKS setting changes.
_backends: dict[str, BaseTaskBackend] = {}

#: The receivers the framework itself connects to its signals (they log the task's start and
#: end on `_framework_logger`), by `Signal.receivers` lookup id.
_LOG_RECEIVER_IDS = frozenset(
    id(found)
    for found in (
        getattr(framework_signals, "log_task_started", None),
        getattr(framework_signals, "log_task_finished", None),
    )
    if found is not None
)
_framework_logger: logging.Logger | None = getattr(framework_signals, "logger", None)


def _heard(signal: Any, level: int) -> bool:
    """Whether sending `signal` could reach anyone: a receiver other than the framework's own
    log receivers, or those with their logger logging at `level`."""
    receivers = signal.receivers
    if not receivers:
        return False
    for entry in receivers:
        key = entry[0][0]
        if type(key) is not int or key not in _LOG_RECEIVER_IDS:
            return True
    return _framework_logger is None or _framework_logger.isEnabledFor(level)


def _backend(alias: str) -> BaseTaskBackend:
    backend = _backends.get(alias)
    if backend is None:
        backend = _backends[alias] = task_backends[alias]
    return backend


def _forget_backends(*, setting: str, **kwargs: Any) -> None:
    if setting == "TASKS":
        _backends.clear()


setting_changed.connect(_forget_backends, dispatch_uid="django_taskqueue.backends.backends")


def run(call: direct.DirectCall) -> Any:
    """Run one attempt of a Django task in the worker and return its (JSON) return value.

    A payload that is not a valid signed call, names an unknown backend or a function that
    cannot be imported is a `PermanentTaskFailure`, as is a return value that is not JSON.
    `task_started` is sent unless it would reach no one but the framework's own log receiver
    with its logger not logging at INFO (then the RUNNING `TaskResult` is not built either,
    unless the task takes its context).
    """
    try:
        stored = callables.decode_json(call.payload, b"task")
        backend = _backend(stored["backend"])
        if not isinstance(backend, TaskQueueBackend):
            raise TypeError(f"the backend {stored['backend']!r} is not a TaskQueueBackend")
        task = backend._task(stored, call.queue_name)
    except Exception as e:
        raise direct.PermanentTaskFailure(f"Cannot load the task: {e}") from e
    attempt = _Attempt(type(backend), task, stored, call, backend.alias)
    if call.enqueued_at is None:
        found = results.read_row(call.queue_name, call.task_name)
        if found is None:  # deleted under our feet; the worker's conditional update notices
            raise direct.PermanentTaskFailure("The task row is gone")
        row = {**found, "state": TaskState.RUNNING, "execution_count": call.execution_count}
        attempt.result = _result(task, stored, row, backend.alias)
    started = _heard(task_started, logging.INFO)
    if started or task.takes_context:
        attempt.task_result()  # no query of its own
    with _running_lock:
        _running[call.task_id] = attempt
    if started:
        task_started.send(attempt.sender, task_result=attempt.task_result())
    if task.takes_context:
        result = attempt.task_result()
        value = task.call(TaskContext(task_result=result), *result.args, **result.kwargs)
    elif attempt.result is not None:
        value = task.call(*attempt.result.args, **attempt.result.kwargs)
    else:
        # The arguments as TaskResult would hand them: decoded from JSON for this attempt
        # alone, they are JSON already (what its normalizing would copy).
        value = task.call(*stored["args"], **stored["kwargs"])
    try:
        value = normalize_json(value)
    except (TypeError, ValueError) as e:
        raise direct.PermanentTaskFailure(f"The return value is not JSON: {e}") from e
    attempt.value = value
    if attempt.result is not None:
        object.__setattr__(attempt.result, "_return_value", value)
    return value


def _running_result(
    task: Task, stored: dict[str, Any], call: direct.DirectCall, alias: str
) -> TaskResult:
    """The RUNNING result of a claimed task, from what the worker hands the call.

    What `_result` makes of the row the claim read, without building the row and the
    package's own result first: the attempt that runs is counted, its errors are the earlier
    attempts'.
    """
    errors = (
        [
            TaskError(exception_class_path=e["exception_class_path"], traceback=e["traceback"])
            for e in results.errors_of({"errors": call.errors})
        ]
        if call.errors
        else []
    )
    return TaskResult(
        task=task,
        id=f"{call.queue_name}:{call.task_name}",
        status=TaskResultStatus.RUNNING,
        enqueued_at=call.enqueued_at,
        started_at=call.first_attempt_at,
        last_attempted_at=call.leased_at,
        finished_at=None,
        args=stored["args"],
        kwargs=stored["kwargs"],
        backend=alias,
        errors=errors,
        worker_ids=[call.worker_id or ""] * (call.execution_count + 1),
    )


def _attempt_finished(
    *,
    task_id: int,
    succeeded: bool,
    will_retry: bool,
    error: BaseException | None = None,
    **kwargs: Any,
) -> None:
    """Send `task_finished` for a Django task once the worker has written its outcome.

    As `task_started`, it is not sent (nor its result built) when it would reach no one but the
    framework's own log receiver with its logger not logging at the level it would log at.
    """
    with _running_lock:
        attempt = _running.pop(task_id, None)
    if attempt is None:
        return
    if succeeded:
        if attempt.result is None and not _heard(task_finished, logging.INFO):
            return
        result = attempt.task_result()
        object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
        object.__setattr__(result, "finished_at", clock.now())
        task_finished.send(attempt.sender, task_result=result)
        return
    if will_retry and attempt.result is None:
        return  # no one holds the result: nothing to update, nothing to send
    if not will_retry and attempt.result is None and not _heard(task_finished, logging.ERROR):
        return
    result = attempt.task_result()
    now = clock.now()
    if error is not None:
        result.errors.append(
            TaskError(
                exception_class_path=f"{type(error).__module__}.{type(error).__qualname__}",
                traceback="".join(traceback_module.format_exception(error)),
            )
        )
    if will_retry:
        # Ready to be executed again: Django's framework has no signal for a retry.
        object.__setattr__(result, "status", TaskResultStatus.READY)
        return
    object.__setattr__(result, "status", TaskResultStatus.FAILED)
    object.__setattr__(result, "finished_at", now)
    task_finished.send(attempt.sender, task_result=result)


task_attempt_finished.connect(_attempt_finished, dispatch_uid="django_taskqueue.backends")
