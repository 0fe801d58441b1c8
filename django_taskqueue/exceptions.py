"""The exception tree of App Engine's taskqueue API, rooted at `Error`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.db import InterfaceError, OperationalError


class Error(Exception):
    """Base class for every taskqueue exception."""

    #: Stable machine-readable code used by the REST API.
    code = "error"

    def __init__(self, message: str | None = None):
        super().__init__(message if message is not None else (self.__doc__ or "").strip())


class UnknownQueueError(Error):
    """The queue is not configured."""

    code = "unknown_queue"


class TransientError(Error):
    """A temporary failure; the call may be retried."""

    code = "transient_error"


class InternalError(Error):
    """An internal error of the task queue."""

    code = "internal_error"


class InvalidTaskError(Error):
    """The task's arguments are invalid."""

    code = "invalid_task"


class InvalidTaskNameError(InvalidTaskError):
    """The task's name is invalid."""

    code = "invalid_task_name"


class TaskTooLargeError(InvalidTaskError):
    """The task is too large for its queue."""

    code = "task_too_large"


class TransactionalRequestTooLargeError(TaskTooLargeError):
    """The transactional request is too large."""

    code = "transactional_request_too_large"


class TaskAlreadyExistsError(InvalidTaskError):
    """A task with this name already exists in the queue."""

    code = "task_already_exists"


class TombstonedTaskError(InvalidTaskError):
    """A task with this name was executed or deleted too recently to be added again."""

    code = "tombstoned_task"


class InvalidUrlError(InvalidTaskError):
    """The task's url is invalid."""

    code = "invalid_url"


class InvalidEtaError(InvalidTaskError):
    """The task's ETA is invalid."""

    code = "invalid_eta"


class BadTaskStateError(Error):
    """The task is in a state that does not allow this operation."""

    code = "bad_task_state"


class InvalidQueueError(Error):
    """The queue's specification is invalid."""

    code = "invalid_queue"


class InvalidQueueNameError(InvalidQueueError):
    """The queue's name is invalid."""

    code = "invalid_queue_name"


class PermissionDeniedError(Error):
    """The caller may not perform this operation on this queue."""

    code = "permission_denied"


class DuplicateTaskNameError(Error):
    """The same task name appears more than once in one request."""

    code = "duplicate_task_name"


class TooManyTasksError(Error):
    """Too many tasks in one request."""

    code = "too_many_tasks"


class DatastoreError(Error):
    """The database failed while adding a task."""

    code = "datastore_error"


class BadTransactionStateError(Error):
    """A transactional add was requested outside a transaction."""

    code = "bad_transaction_state"


BadTransactionState = BadTransactionStateError


class InvalidTaskRetryOptionsError(Error):
    """The task's retry options are invalid."""

    code = "invalid_task_retry_options"


class InvalidLeaseTimeError(Error):
    """The lease time is out of range."""

    code = "invalid_lease_time"


class InvalidMaxTasksError(Error):
    """The maximum number of tasks is out of range."""

    code = "invalid_max_tasks"


class InvalidDeadlineError(Error):
    """The deadline is not a positive number."""

    code = "invalid_deadline"


class InvalidQueueModeError(Error):
    """The operation does not fit the queue's mode (push or pull)."""

    code = "invalid_queue_mode"


class TaskLeaseExpiredError(Error):
    """The task's lease has expired or is not the lease the caller holds."""

    code = "task_lease_expired"


class QueuePausedError(Error):
    """The queue is paused."""

    code = "queue_paused"


class InvalidTagError(Error):
    """The tag is invalid."""

    code = "invalid_tag"


class InvalidDispatchDeadlineError(Error):
    """The dispatch deadline is out of range."""

    code = "invalid_dispatch_deadline"


class UnknownTaskError(Error):
    """No such task in the queue."""

    code = "unknown_task"


def transient_on_database_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Raise `TransientError` when the database fails in a way worth retrying.

    Lock timeouts, a busy SQLite file, a lost connection: App Engine code already catches
    `TransientError` around queue calls and backs off, which is the right answer here too.
    """

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            raise TransientError(f"The queue's database failed; try again: {exc}") from exc

    return wrapper
