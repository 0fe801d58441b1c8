"""Results of push tasks read from their rows, with the fields of Django's `TaskResult`.

A push task's row is its result: the worker writes `state`, `return_value` (what a direct call
returned), one `errors` entry per failed attempt, `execution_count` and the `*_at` timestamps.
The row stays until the sweep prunes it (`FINISHED_RETENTION_SECONDS` for succeeded tasks,
`FAILED_RETENTION_SECONDS` for failed ones), so a result is readable from any process until then.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, fields
from typing import Any

from django.db import models
from django.utils.module_loading import import_string
from django.utils.translation import pgettext_lazy

from .conf import taskqueue_settings
from .exceptions import UnknownTaskError
from .models import TaskRecord, TaskState

#: The columns a result is made of.
RESULT_COLUMNS = (
    "id",
    "queue_name",
    "name",
    "state",
    "url",
    "payload",
    "priority",
    "eta",
    "enqueued_at",
    "first_attempt_at",
    "leased_at",
    "finished_at",
    "execution_count",
    "worker_id",
    "return_value",
    "errors",
)


class ResultStatus(models.TextChoices):
    """The statuses of Django's `TaskResultStatus`, with the same values."""

    READY = "READY", pgettext_lazy("Task", "Ready")
    RUNNING = "RUNNING", pgettext_lazy("Task", "Running")
    FAILED = "FAILED", pgettext_lazy("Task", "Failed")
    SUCCESSFUL = "SUCCESSFUL", pgettext_lazy("Task", "Successful")


# Waiting, and waiting for a retry after a backoff, are both READY (Django's "just enqueued, or
# ready to be executed again"); deleted and purged tasks never ran to success: FAILED.
_STATUS = {
    TaskState.QUEUED: ResultStatus.READY,
    TaskState.RUNNING: ResultStatus.RUNNING,
    TaskState.SUCCEEDED: ResultStatus.SUCCESSFUL,
    TaskState.FAILED: ResultStatus.FAILED,
    TaskState.DELETED: ResultStatus.FAILED,
}


@dataclass(frozen=True)
class TaskError:
    """One failed attempt, as Django's `TaskError`."""

    exception_class_path: str
    traceback: str

    @property
    def exception_class(self) -> type[BaseException]:
        """Import and return the exception's class."""
        found = import_string(self.exception_class_path)
        if not (isinstance(found, type) and issubclass(found, BaseException)):
            raise ValueError(f"{self.exception_class_path!r} is not an exception class")
        return found


def status_of(state: str) -> ResultStatus:
    """Return the result status of a task state."""
    return _STATUS[TaskState(state)]


def attempts_of(row: dict[str, Any]) -> int:
    """Return how many attempts ran, the running one included."""
    # The worker counts an attempt in execution_count when it ends; a running attempt counts too.
    return row["execution_count"] + (1 if row["state"] == TaskState.RUNNING else 0)


def errors_of(row: dict[str, Any]) -> list[dict[str, str]]:
    """Return `{exception_class_path, traceback}` of each failed attempt that raised (oldest first).

    Failures without an exception (an HTTP status, a deadline) carry their reason instead.
    """
    found = []
    for entry in row["errors"] or []:
        if not isinstance(entry, dict):
            continue
        path = entry.get("exception")
        traceback = entry.get("traceback") or entry.get("reason") or ""
        if path is None:
            path = "django_taskqueue.exceptions.Error"
        found.append({"exception_class_path": path, "traceback": traceback})
    return found


@dataclass(frozen=True)
class TaskResult:
    """The outcome of a push task so far, with the fields of Django's `TaskResult`."""

    id: str
    queue_name: str
    name: str
    status: ResultStatus
    enqueued_at: datetime.datetime | None
    started_at: datetime.datetime | None
    last_attempted_at: datetime.datetime | None
    finished_at: datetime.datetime | None
    attempts: int
    errors: list[TaskError]
    _return_value: Any = None

    @property
    def return_value(self) -> Any:
        """What the callable returned; raises `ValueError` unless the task succeeded."""
        if self.status == ResultStatus.SUCCESSFUL:
            return self._return_value
        if self.status == ResultStatus.FAILED:
            raise ValueError("Task failed")
        raise ValueError("Task has not finished yet")

    @property
    def is_finished(self) -> bool:
        return self.status in (ResultStatus.SUCCESSFUL, ResultStatus.FAILED)

    def refresh(self) -> None:
        """Reload the result from the database, as Django's `TaskResult.refresh()` does."""
        fresh = get_result(self.name, self.queue_name)
        for field in fields(self):
            object.__setattr__(self, field.name, getattr(fresh, field.name))


def read_row(queue_name: str, name: str) -> dict[str, Any] | None:
    """Return the result columns of the task `name` of `queue_name`, or None."""
    return (
        TaskRecord.objects.using(taskqueue_settings.DATABASE)
        .filter(queue_name=queue_name, name=name)
        .values(*RESULT_COLUMNS)
        .first()
    )


def from_row(row: dict[str, Any]) -> TaskResult:
    """Return the result of a task row read with `RESULT_COLUMNS`."""
    status = status_of(row["state"])
    return TaskResult(
        id=f"{row['queue_name']}:{row['name']}",
        queue_name=row["queue_name"],
        name=row["name"],
        status=status,
        enqueued_at=row["enqueued_at"],
        started_at=row["first_attempt_at"],
        last_attempted_at=row["leased_at"],
        finished_at=row["finished_at"]
        if status in (ResultStatus.SUCCESSFUL, ResultStatus.FAILED)
        else None,
        attempts=attempts_of(row),
        errors=[TaskError(**error) for error in errors_of(row)],
        _return_value=row["return_value"] if status == ResultStatus.SUCCESSFUL else None,
    )


def get_result(task_name: str, queue_name: str = "default") -> TaskResult:
    """Return the result of the push task `task_name` of `queue_name`, from any process.

    Raises `UnknownTaskError` when there is no such task (never added, or pruned).
    """
    row = read_row(queue_name, task_name)
    if row is None:
        raise UnknownTaskError(f"No task named {task_name!r} in queue {queue_name!r}")
    return from_row(row)


async def aget_result(task_name: str, queue_name: str = "default") -> TaskResult:
    """`get_result` for async code."""
    from asgiref.sync import sync_to_async

    return await sync_to_async(get_result, thread_sensitive=True)(task_name, queue_name)
