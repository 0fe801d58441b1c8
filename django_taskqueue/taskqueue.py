"""App Engine's `google.appengine.api.taskqueue`, name for name, on the Django database.

Change ``from google.appengine.api import taskqueue`` into
``from django_taskqueue import taskqueue`` and the calls keep their meaning: `add`, `Task`,
`Queue`, `QueueStatistics`, `TaskRetryOptions`, the constants and the exceptions. Where App
Engine's behaviour does not carry over to a SQL database, `docs/decisions.md` says what this
module does instead.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connections, transaction

from . import clock
from . import statistics as _statistics_module
from . import task as _task_module
from .conf import taskqueue_settings
from .db import TaskRow, operations
from .db.rows import ANY_TAG
from .exceptions import (
    BadTaskStateError,
    BadTransactionState,
    BadTransactionStateError,
    DatastoreError,
    DuplicateTaskNameError,
    Error,
    InternalError,
    InvalidDeadlineError,
    InvalidDispatchDeadlineError,
    InvalidEtaError,
    InvalidLeaseTimeError,
    InvalidMaxTasksError,
    InvalidQueueError,
    InvalidQueueModeError,
    InvalidQueueNameError,
    InvalidTagError,
    InvalidTaskError,
    InvalidTaskNameError,
    InvalidTaskRetryOptionsError,
    InvalidUrlError,
    PermissionDeniedError,
    QueuePausedError,
    TaskAlreadyExistsError,
    TaskLeaseExpiredError,
    TaskTooLargeError,
    TombstonedTaskError,
    TooManyTasksError,
    TransactionalRequestTooLargeError,
    TransientError,
    UnknownQueueError,
    UnknownTaskError,
    transient_on_database_errors,
)
from .limits import (
    DEFAULT_QUEUE,
    DEFAULT_QUEUE_PATH,
    MAX_DISPATCH_DEADLINE,
    MAX_LEASE_SECONDS,
    MAX_PULL_TASK_SIZE_BYTES,
    MAX_PUSH_TASK_SIZE_BYTES,
    MAX_QUEUE_NAME_LENGTH,
    MAX_TAG_LENGTH,
    MAX_TASK_NAME_LENGTH,
    MAX_TASK_SIZE_BYTES,
    MAX_TASKS_PER_ADD,
    MAX_TASKS_PER_LEASE,
    MAX_TRANSACTIONAL_REQUEST_SIZE_BYTES,
    MAX_URL_LENGTH,
    MIN_DISPATCH_DEADLINE,
    QUEUE_NAME_RE,
)
from .models import FINISHED_STATES, QueueState
from .queues import QueueConfig, get_queue_config
from .retry import RetryParameters, effective_retry_parameters, may_lease_again
from .rpc import UserRPC, check_deadline, create_rpc
from .statistics import QueueStatistics
from .task import (
    DEFAULT_APP_VERSION,
    Task,
    TaskRetryOptions,
    _check_eta,
    _new_task_name,
)

__all__ = [
    "add",
    "aadd",
    "create_rpc",
    "Task",
    "Queue",
    "QueueStatistics",
    "TaskRetryOptions",
    "UserRPC",
    "DEFAULT_APP_VERSION",
    "MAX_QUEUE_NAME_LENGTH",
    "MAX_TASK_NAME_LENGTH",
    "MAX_TASK_SIZE_BYTES",
    "MAX_PUSH_TASK_SIZE_BYTES",
    "MAX_PULL_TASK_SIZE_BYTES",
    "MAX_TASKS_PER_ADD",
    "MAX_TASKS_PER_LEASE",
    "MAX_TRANSACTIONAL_REQUEST_SIZE_BYTES",
    "MAX_URL_LENGTH",
    "MAX_TAG_LENGTH",
    "MAX_LEASE_SECONDS",
    "MIN_DISPATCH_DEADLINE",
    "MAX_DISPATCH_DEADLINE",
    "Error",
    "UnknownQueueError",
    "TransientError",
    "InternalError",
    "InvalidTaskError",
    "InvalidTaskNameError",
    "TaskTooLargeError",
    "TransactionalRequestTooLargeError",
    "TaskAlreadyExistsError",
    "TombstonedTaskError",
    "InvalidUrlError",
    "InvalidEtaError",
    "BadTaskStateError",
    "InvalidQueueError",
    "InvalidQueueNameError",
    "PermissionDeniedError",
    "DuplicateTaskNameError",
    "TooManyTasksError",
    "DatastoreError",
    "BadTransactionStateError",
    "BadTransactionState",
    "InvalidTaskRetryOptionsError",
    "InvalidLeaseTimeError",
    "InvalidMaxTasksError",
    "InvalidDeadlineError",
    "InvalidQueueModeError",
    "TaskLeaseExpiredError",
    "QueuePausedError",
    "InvalidTagError",
    "InvalidDispatchDeadlineError",
    "UnknownTaskError",
]

logger = logging.getLogger("django_taskqueue")


_noted_targets: set[str] = set()


def _note_in_process_target(target: str) -> None:
    # App Engine's targets are versions or services of one app; here every target that is not
    # a key of TARGETS is served by this Django project, so the task runs in-process.
    if target not in _noted_targets:
        _noted_targets.add(target)
        logger.warning(
            "event=target_in_process target=%s hint=%s",
            target,
            "not a key of TASKQUEUE['TARGETS']; its tasks run in-process",
        )


def _check_lease_seconds(lease_seconds: Any) -> None:
    if isinstance(lease_seconds, bool) or not isinstance(lease_seconds, (int, float)):
        raise TypeError(f"lease_seconds must be a number, not {type(lease_seconds).__name__}")
    if not 0 <= lease_seconds <= MAX_LEASE_SECONDS:
        raise InvalidLeaseTimeError(
            f"lease_seconds must be between 0 and {MAX_LEASE_SECONDS}; found {lease_seconds}"
        )


def _check_max_tasks(max_tasks: Any) -> None:
    if isinstance(max_tasks, bool) or not isinstance(max_tasks, int):
        raise TypeError(f"max_tasks must be an int, not {type(max_tasks).__name__}")
    if not 1 <= max_tasks <= MAX_TASKS_PER_LEASE:
        raise InvalidMaxTasksError(
            f"max_tasks must be between 1 and {MAX_TASKS_PER_LEASE}; found {max_tasks}"
        )


# -- queues ----------------------------------------------------------------------------------


class Queue:
    """A queue of `queue.yaml` (or `TASKQUEUE["QUEUES"]`); `default` always exists.

    The name is checked here (`InvalidQueueNameError`); whether the queue exists is checked
    by each operation (`UnknownQueueError`), as on App Engine.
    """

    def __init__(self, name: str = DEFAULT_QUEUE):
        if not isinstance(name, str) or not QUEUE_NAME_RE.fullmatch(name):
            raise InvalidQueueNameError(
                f"Queue name does not match pattern {QUEUE_NAME_RE.pattern!r}; found {name!r}"
            )
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Queue) and other._name == self._name

    def __hash__(self) -> int:
        return hash(self._name)

    def __repr__(self) -> str:
        return f"Queue({self._name!r})"

    @property
    def config(self) -> QueueConfig:
        """This queue's configuration; raises `UnknownQueueError`."""
        return get_queue_config(self._name)

    @staticmethod
    def _alias() -> str:
        return taskqueue_settings.DATABASE

    def _pull_config(self) -> QueueConfig:
        config = self.config
        if not config.is_pull:
            raise InvalidQueueModeError(f"Queue {self._name!r} is a push queue, not a pull queue")
        return config

    # -- add -------------------------------------------------------------------------------

    def add(self, task: Task | Iterable[Task], transactional: bool = False) -> Any:
        """Add a task or a list of up to 100 tasks; return what was given.

        A task added inside `transaction.atomic()` on the queue's database is part of that
        transaction. Raises `TooManyTasksError`, `DuplicateTaskNameError`, `BadTaskStateError`
        (a task already added), `InvalidTaskError` (push and pull tasks mixed),
        `UnknownQueueError`, `InvalidQueueModeError`, `BadTransactionStateError`
        (`transactional=True` outside a transaction), and for named tasks
        `TaskAlreadyExistsError` or `TombstonedTaskError` after adding every other task.
        """
        if not task:
            return []
        # Through the async twin, as App Engine's client: a test that patches `add_async`
        # sees every add.
        return self.add_async(task, transactional).get_result()

    def add_async(
        self, task: Task | Iterable[Task], transactional: bool = False, rpc: UserRPC | None = None
    ) -> UserRPC:
        """Add as `add` does; the returned RPC's `get_result()` gives the value or raises."""
        return (rpc or UserRPC())._run(lambda: self._add_now(task, transactional))

    @transient_on_database_errors
    def _add_now(self, task: Task | Iterable[Task], transactional: bool) -> Any:
        if not task:
            return []
        single = isinstance(task, Task)
        tasks = _task_list(task)
        if not tasks:
            return []
        self._add(tasks, transactional)
        return task if single or isinstance(task, list) else tasks

    def _add(self, tasks: list[Task], transactional: bool) -> None:
        if len(tasks) > MAX_TASKS_PER_ADD:
            raise TooManyTasksError(f"No more than {MAX_TASKS_PER_ADD} tasks may be added at once")
        names: set[str] = set()
        for task in tasks:
            if not isinstance(task, Task):
                raise TypeError(f"Expected Task, found {type(task).__name__}")
            if task.was_enqueued:
                raise BadTaskStateError("The task has already been added")
            if task.name is not None:
                if task.name in names:
                    raise DuplicateTaskNameError(
                        f"The task name {task.name!r} is used more than once in the request"
                    )
                names.add(task.name)
        # Checked before the queue, as App Engine's client checks it while building the request.
        alias = self._alias()
        carrier = None
        if transactional and not connections[alias].in_atomic_block:
            carrier = next(
                (
                    c.alias
                    for c in connections.all(initialized_only=True)
                    if c.alias != alias and c.in_atomic_block
                ),
                None,
            )
            if carrier is None:
                raise BadTransactionStateError(
                    "transactional=True needs an open transaction.atomic() block"
                )
            if names:
                raise InvalidTaskNameError(
                    "A task bound to a transaction on another database cannot be named"
                )

        is_pull = tasks[0].method == "PULL"
        if any((task.method == "PULL") is not is_pull for task in tasks):
            raise InvalidTaskError("Can not add both push and pull tasks in one request")
        config = self.config
        if is_pull != config.is_pull:
            raise InvalidQueueModeError(
                f"Cannot add a {'pull' if is_pull else 'push'} task to the "
                f"{config.mode} queue {self._name!r}"
            )
        now = clock.now()
        targets = taskqueue_settings.TARGETS
        for task in tasks:
            if is_pull and task.payload is None:
                raise BadTaskStateError("A pull task must have a payload")
            _check_eta(task.eta, now)
            target = task.target
            if isinstance(target, str) and target not in targets:
                _note_in_process_target(target)

        # Names drawn here are 128 random bits (`_new_task_name`): none is ever taken, so an add
        # of unnamed tasks needs no conflict handling in its statement. (The test stub's names,
        # task1, task2..., may be; they take the conflict-skipping insert, as named tasks do.)
        random_names = not names and _task_module._test_name_source is None
        default_path = f"{DEFAULT_QUEUE_PATH}/{self._name}"
        rows = []
        for task in tasks:
            url = task._row_url(default_path)
            target = task.target
            rows.append(
                TaskRow(
                    queue_name=self._name,
                    name=task.name or _new_task_name(),
                    method=task.method,
                    url="" if is_pull else url,
                    headers=task._stored_headers(),
                    payload=task._payload_bytes(),
                    tag=task.tag,
                    target=target if isinstance(target, str) else None,
                    eta=task.eta,
                    enqueued_at=now,
                    # App Engine's client sends a task's own retry options for push tasks only;
                    # a pull task follows its queue's.
                    retry_options=(
                        (task.retry_options.to_dict() or None)
                        if task.retry_options and not is_pull
                        else None
                    ),
                    priority=task._priority,
                    dispatch_deadline_usec=None if is_pull else task.dispatch_deadline_usec,
                )
            )

        if carrier is not None:
            # The caller's transaction is on another database: the rows follow it when it
            # commits, and are never written if it rolls back.
            transaction.on_commit(lambda: self._insert_carried(rows, random_names), using=carrier)
            for task, row in zip(tasks, rows, strict=True):
                task._mark_enqueued(self._name, row.name, row.url)
            return

        inserted = self._insert(rows, now, random_names)
        if len(inserted) == len(rows):
            for task, row in zip(tasks, rows, strict=True):
                task._mark_enqueued(self._name, row.name, row.url)
            return
        error: Error | None = None
        for task, row in zip(tasks, rows, strict=True):
            if row.name in inserted:
                task._mark_enqueued(self._name, row.name, row.url)
            elif error is None or isinstance(error, (TaskAlreadyExistsError, TombstonedTaskError)):
                # App Engine's rule for a batch: the last name conflict is raised (any other
                # error would win over conflicts; a database add has no other per-task error).
                error = inserted.conflicts[row.name]
        if error is not None:
            raise error

    def _insert(
        self, rows: list[TaskRow], now: datetime.datetime, random_names: bool = False
    ) -> _Inserted:
        """Insert `rows`; a name already taken gets its error in `conflicts`.

        `random_names`: every name was drawn by `_new_task_name`, so none can be taken.
        """
        ops = operations(self._alias())
        push = rows[0].method != "PULL"
        inserted = _Inserted(ops.insert(rows, notify=push, random_names=random_names))
        if len(inserted) == len(rows):
            return inserted
        missing = [row.name for row in rows if row.name not in inserted]
        existing = ops.existing(self._name, missing)
        cutoff = now - datetime.timedelta(seconds=taskqueue_settings.TOMBSTONE_SECONDS)
        retry = []
        for name in missing:
            row = existing.get(name)
            if row is None:
                retry.append(name)  # pruned since the insert: the name is free again
            elif row["state"] in FINISHED_STATES and row["finished_at"] < cutoff:
                retry.append(name)  # its tombstone has ended
        if retry:
            ops.drop_expired_tombstones(self._name, retry, cutoff)
            again = ops.insert([row for row in rows if row.name in retry], notify=push)
            inserted |= again
            existing = ops.existing(self._name, [n for n in missing if n not in again])
        for name in missing:
            if name in inserted:
                continue
            row = existing.get(name)
            if row is not None and row["state"] in FINISHED_STATES:
                inserted.conflicts[name] = TombstonedTaskError(
                    f"The task name {name!r} was used by a task that has finished or was deleted"
                )
            else:
                inserted.conflicts[name] = TaskAlreadyExistsError(
                    f"A task named {name!r} already exists in queue {self._name!r}"
                )
        return inserted

    def _insert_carried(self, rows: list[TaskRow], random_names: bool) -> None:
        try:
            self._insert(rows, clock.now(), random_names)
        except Exception:
            logger.exception("event=carried_add_failed queue=%s tasks=%s", self._name, len(rows))

    # -- pull ------------------------------------------------------------------------------

    def lease_tasks(self, lease_seconds: float, max_tasks: int, deadline: float = 10) -> list[Task]:
        """Lease up to `max_tasks` due tasks of this pull queue for `lease_seconds`.

        Each leased task's `eta` becomes its lease expiry and its `retry_count` counts this
        lease. Oldest ETA first. Raises `InvalidLeaseTimeError`, `InvalidMaxTasksError`,
        `InvalidQueueModeError` (push queue), `UnknownQueueError`.
        """
        check_deadline(deadline)
        return self.lease_tasks_async(lease_seconds, max_tasks, UserRPC(deadline)).get_result()

    def lease_tasks_async(
        self, lease_seconds: float, max_tasks: int, rpc: UserRPC | None = None
    ) -> UserRPC:
        return (rpc or UserRPC())._run(
            lambda: self._lease(lease_seconds, max_tasks, group_by_tag=False, tag=None)
        )

    def lease_tasks_by_tag(
        self, lease_seconds: float, max_tasks: int, tag: str | None = None, deadline: float = 10
    ) -> list[Task]:
        """Lease due tasks that share a tag: `tag`, or the oldest task's tag when None.

        When `tag` is None and the oldest due task has no tag, only untagged tasks among the
        oldest `max_tasks` are leased.
        """
        check_deadline(deadline)
        rpc = UserRPC(deadline)
        return self.lease_tasks_by_tag_async(lease_seconds, max_tasks, tag, rpc).get_result()

    def lease_tasks_by_tag_async(
        self,
        lease_seconds: float,
        max_tasks: int,
        tag: str | None = None,
        rpc: UserRPC | None = None,
    ) -> UserRPC:
        return (rpc or UserRPC())._run(
            lambda: self._lease(lease_seconds, max_tasks, group_by_tag=True, tag=tag)
        )

    @transient_on_database_errors
    def _lease(
        self,
        lease_seconds: float,
        max_tasks: int,
        group_by_tag: bool,
        tag: str | None,
    ) -> list[Task]:
        _check_lease_seconds(lease_seconds)
        _check_max_tasks(max_tasks)
        if isinstance(tag, bytes):
            tag = tag.decode("utf-8")
        config = self._pull_config()
        queue_parameters = config.retry_parameters

        def may_lease(row: Mapping[str, Any]) -> bool:
            parameters: RetryParameters = effective_retry_parameters(
                row["retry_options"], queue_parameters
            )
            return may_lease_again(parameters, row["retry_count"])

        now = clock.now()
        rows = operations(self._alias()).lease(
            self._name,
            now,
            now + datetime.timedelta(seconds=lease_seconds),
            max_tasks,
            may_lease,
            tag=tag if group_by_tag else ANY_TAG,
            group_by_tag=group_by_tag,
        )
        return [Task._leased(self._name, row) for row in rows]

    @transient_on_database_errors
    def modify_task_lease(self, task: Task, lease_seconds: float) -> None:
        """Extend (or with 0, release) the lease `task.eta` on `task`; update `task.eta`.

        Raises `TaskLeaseExpiredError` when the lease is not the one stored (another lease
        took the task, or it expired), `QueuePausedError`, `InvalidQueueModeError`,
        `TombstonedTaskError` for a deleted task, `UnknownTaskError` for an unknown one.
        """
        _check_lease_seconds(lease_seconds)
        self._pull_config()
        if task.name is None:
            raise BadTaskStateError("Only a named (leased) task's lease can be modified")
        alias = self._alias()
        if QueueState.objects.using(alias).filter(name=self._name, paused=True).exists():
            raise QueuePausedError(f"Queue {self._name!r} is paused")
        now = clock.now()
        new_eta = now + datetime.timedelta(seconds=lease_seconds)
        ops = operations(alias)
        if ops.modify_lease(self._name, task.name, task.eta, new_eta, now):
            task._extend_lease(new_eta)
            return
        row = ops.existing(self._name, [task.name]).get(task.name)
        if row is None:
            raise UnknownTaskError(f"No task named {task.name!r} in queue {self._name!r}")
        if row["state"] in FINISHED_STATES:
            raise TombstonedTaskError(f"The task {task.name!r} has finished or was deleted")
        raise TaskLeaseExpiredError(f"The lease on task {task.name!r} has expired or changed")

    # -- delete ----------------------------------------------------------------------------

    def delete_tasks(self, task: Task | Iterable[Task]) -> Any:
        """Delete tasks by name; each task's `was_deleted` says whether it was live.

        Unknown and already finished names are not an error (`was_deleted` stays False).
        Raises `BadTaskStateError` for an unnamed or already deleted task and
        `DuplicateTaskNameError` for a name given twice.
        """
        return self.delete_tasks_async(task).get_result()

    @transient_on_database_errors
    def _delete_now(self, task: Task | Iterable[Task]) -> Any:
        single = isinstance(task, Task)
        tasks = _task_list(task)
        names: list[str] = []
        seen: set[str] = set()
        for t in tasks:
            if t.name is None:
                raise BadTaskStateError("A task must be named to be deleted")
            if t.was_deleted:
                raise BadTaskStateError(f"The task {t.name!r} has already been deleted")
            if t.name in seen:
                raise DuplicateTaskNameError(
                    f"The task name {t.name!r} is used more than once in the request"
                )
            seen.add(t.name)
            names.append(t.name)
        self.config  # noqa: B018  (raises UnknownQueueError)
        if names:
            ops, now = operations(self._alias()), clock.now()
            # Tasks read back from this queue (a lease) carry their row's id: their rows are
            # found by primary key. The row of a name that is not live by id is looked up by
            # name as well (its row may have been pruned and the name used again since), so
            # what is deleted is exactly what deleting by name deletes.
            by_id = {t._row_id: t for t in tasks if t._queue_name == self._name and t._row_id}
            rest, rest_names = tasks, names
            if by_id:
                for row_id in ops.delete_by_ids(self._name, list(by_id), now):
                    by_id.pop(row_id)._mark_deleted()
                rest = [t for t in tasks if not t.was_deleted]
                rest_names = [t.name for t in rest if t.name is not None]
            if rest:
                deleted = ops.delete_by_names(self._name, rest_names, now)
                for t in rest:
                    if t.name in deleted:
                        t._mark_deleted()
        return task if single or isinstance(task, list) else tasks

    def delete_tasks_async(
        self, task: Task | Iterable[Task], rpc: UserRPC | None = None
    ) -> UserRPC:
        return (rpc or UserRPC())._run(lambda: self._delete_now(task))

    def delete_tasks_by_name(self, task_name: str | Iterable[str]) -> Any:
        """Delete tasks by name; return the `Task` objects (one, or a list) with `was_deleted`."""
        return self.delete_tasks_by_name_async(task_name).get_result()

    def delete_tasks_by_name_async(
        self, task_name: str | Iterable[str], rpc: UserRPC | None = None
    ) -> UserRPC:
        if isinstance(task_name, str):
            return self.delete_tasks_async(Task(name=task_name), rpc)
        return self.delete_tasks_async([Task(name=name) for name in task_name], rpc)

    @transient_on_database_errors
    def purge(self) -> None:
        """Delete every task of the queue; their names stay tombstoned.

        A push task already running finishes, but its outcome is not recorded.
        """
        self.config  # noqa: B018  (raises UnknownQueueError)
        count = operations(self._alias()).purge(self._name, clock.now())
        logger.info("event=purge queue=%s tasks=%s", self._name, count)

    # -- pause (an extension: App Engine pauses from its console) -------------------------

    def pause(self) -> None:
        """Pause the queue: no dispatch, leasing returns [], `modify_task_lease` raises."""
        self.config  # noqa: B018
        self._set_paused(True)

    def resume(self) -> None:
        """Resume a queue paused with `pause()` (a queue with `rate: 0` stays paused)."""
        self.config  # noqa: B018
        self._set_paused(False)

    def _set_paused(self, paused: bool) -> None:
        QueueState.objects.using(self._alias()).update_or_create(
            name=self._name, defaults={"paused": paused, "updated_at": clock.now()}
        )

    def is_paused(self) -> bool:
        """Whether the queue is paused, by `pause()` or by `rate: 0`."""
        if self.config.paused_by_config:
            return True
        return QueueState.objects.using(self._alias()).filter(name=self._name, paused=True).exists()

    # -- statistics ------------------------------------------------------------------------

    def fetch_statistics(self, deadline: float = 10) -> QueueStatistics:
        """Return the queue's current `QueueStatistics`."""
        check_deadline(deadline)
        return self.fetch_statistics_async(UserRPC(deadline)).get_result()

    def fetch_statistics_async(self, rpc: UserRPC | None = None) -> UserRPC:
        return QueueStatistics.fetch_async(self, rpc)

    # -- coroutine twins, for async views --------------------------------------------------

    async def aadd(self, task: Task | Iterable[Task], transactional: bool = False) -> Any:
        return await sync_to_async(self.add)(task, transactional)

    async def alease_tasks(
        self, lease_seconds: float, max_tasks: int, deadline: float = 10
    ) -> list[Task]:
        return await sync_to_async(self.lease_tasks)(lease_seconds, max_tasks, deadline)

    async def alease_tasks_by_tag(
        self, lease_seconds: float, max_tasks: int, tag: str | None = None, deadline: float = 10
    ) -> list[Task]:
        return await sync_to_async(self.lease_tasks_by_tag)(lease_seconds, max_tasks, tag, deadline)

    async def amodify_task_lease(self, task: Task, lease_seconds: float) -> None:
        return await sync_to_async(self.modify_task_lease)(task, lease_seconds)

    async def adelete_tasks(self, task: Task | Iterable[Task]) -> Any:
        return await sync_to_async(self.delete_tasks)(task)

    async def adelete_tasks_by_name(self, task_name: str | Iterable[str]) -> Any:
        return await sync_to_async(self.delete_tasks_by_name)(task_name)

    async def apurge(self) -> None:
        return await sync_to_async(self.purge)()

    async def afetch_statistics(self, deadline: float = 10) -> QueueStatistics:
        return await sync_to_async(self.fetch_statistics)(deadline)


class _Inserted(set):
    """The names an insert wrote, and the error for each name it could not."""

    def __init__(self, names: Iterable[str] = ()):
        super().__init__(names)
        self.conflicts: dict[str, Error] = {}


# -- module functions ------------------------------------------------------------------------


def add(*args: Any, **kwargs: Any) -> Task:
    """Create a `Task(*args, **kwargs)` and add it to `queue_name` (default 'default').

    Takes `transactional=False` and `queue_name='default'` besides the `Task` arguments.
    """
    transactional = kwargs.pop("transactional", False)
    queue_name = kwargs.pop("queue_name", DEFAULT_QUEUE)
    return Task(*args, **kwargs).add(queue_name, transactional)


async def aadd(*args: Any, **kwargs: Any) -> Task:
    """The coroutine twin of `add`."""
    return await sync_to_async(add)(*args, **kwargs)


# `task` and `statistics` use Queue when called; they cannot import this module, which imports
# them, so it hands them the class here.


def _task_list(task: Task | Iterable[Task]) -> list[Task]:
    """Return App Engine's "a Task or an iterable of Tasks" argument as a list."""
    return [task] if isinstance(task, Task) else list(task)


_task_module._queue_class = Queue
_statistics_module._queue_class = Queue
