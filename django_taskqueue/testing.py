"""Helpers for users' tests, in the manner of App Engine's testbed taskqueue stub.

`get_filtered_tasks` and `run_tasks` work in any test. `TaskQueueStub` is the testbed's stub:
while it is active, unnamed tasks are named ``task1``, ``task2``, … (as the stub names them, so
tests can assert names), and it offers the stub's calls that tests use (`GetTasks`,
`FlushQueue`, `DeleteTask`, `get_filtered_tasks`) plus `run_due_tasks`.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from django.db.models import Count

from . import task as task_module
from .conf import taskqueue_settings
from .dispatch.delivery import eta_header
from .models import LIVE, DeferredPayload, TaskRecord
from .queues import all_queue_configs
from .taskqueue import Task

_COLUMNS = (
    "queue_name",
    "name",
    "method",
    "url",
    "headers",
    "payload",
    "tag",
    "target",
    "eta",
    "retry_count",
    "execution_count",
    "retry_options",
    "priority",
    "dispatch_deadline_usec",
)


def _live_rows(
    url: str | None = None,
    name: str | None = None,
    queue_names: str | Iterable[str] | None = None,
) -> Any:
    rows = TaskRecord.objects.using(taskqueue_settings.DATABASE).filter(LIVE)
    if url is not None:
        rows = rows.filter(url=url)
    if name is not None:
        rows = rows.filter(name=name)
    if queue_names is not None:
        names = [queue_names] if isinstance(queue_names, str) else list(queue_names)
        rows = rows.filter(queue_name__in=names)
    return rows.order_by("eta", "id")


def get_filtered_tasks(
    url: str | None = None,
    name: str | None = None,
    queue_names: str | Iterable[str] | None = None,
) -> list[Task]:
    """Return the live tasks (waiting, leased or running) that match every filter given.

    `url` matches a push task's full url (its queue's default url included); `queue_names`
    is a name or a list of names. Tasks come in ETA order.
    """
    rows = _live_rows(url, name, queue_names)
    return [Task._restore(row["queue_name"], row) for row in rows.values(*_COLUMNS)]


def run_tasks(queue_names: str | Iterable[str] | None = None) -> int:
    """Run the due push tasks of the queues (default: every push queue); return how many ran.

    Runs in the calling thread, inside the test's transaction if there is one, through the
    same delivery, retry and outcome code as `runtaskworker`, until no task is due. Rate limits
    are ignored (as on App Engine's development server); paused queues are left alone. A
    failed task is queued again with its backoff, so it is not due yet: advance the clock
    (or wait) and call again to run its retry.
    """
    from .dispatch.worker import Worker

    if isinstance(queue_names, str):
        queue_names = [queue_names]
    worker = Worker(
        queue_names, burst=True, rate_limits=False, run_sweeps=False, write_behind=False
    )
    return worker.run()


class TaskQueueStub:
    """App Engine's testbed taskqueue stub, on the queue's database.

        def test_signup_sends_mail(self):
            with TaskQueueStub() as stub:
                signup(...)
                [task] = stub.get_filtered_tasks(queue_names="mail")
                assert task.name == "task1"
                stub.run_due_tasks()

    Also usable as `stub.activate()` / `stub.deactivate()` (in `setUp`/`tearDown`). Only one
    stub is active at a time; names restart at ``task1`` with each stub.
    """

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    # -- activation ----------------------------------------------------------------------

    def _next_name(self) -> str:
        return f"task{next(self._counter)}"

    def activate(self) -> TaskQueueStub:
        """Name unnamed tasks task1, task2, … until `deactivate()`."""
        task_module._test_name_source = self._next_name
        return self

    def deactivate(self) -> None:
        """Give unnamed tasks random names again."""
        if task_module._test_name_source == self._next_name:
            task_module._test_name_source = None

    def __enter__(self) -> TaskQueueStub:
        return self.activate()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.deactivate()

    # -- the stub's calls ------------------------------------------------------------------

    def get_filtered_tasks(
        self,
        url: str | None = None,
        name: str | None = None,
        queue_names: str | Iterable[str] | None = None,
    ) -> list[Task]:
        """Return the live tasks matching every filter given (see module `get_filtered_tasks`)."""
        return get_filtered_tasks(url, name, queue_names)

    def GetTasks(self, queue_name: str) -> list[dict[str, Any]]:  # noqa: N802 (App Engine's name)
        """Return a queue's live tasks as the stub's dicts (`body` is base64, as there)."""
        tasks = []
        for row in _live_rows(queue_names=queue_name).values(*_COLUMNS, "enqueued_at"):
            payload = bytes(row["payload"]) if row["payload"] is not None else b""
            eta_usec = int(round(row["eta"].timestamp() * 1_000_000))
            headers = [(k, v) for k, v in row["headers"] or []]
            headers += [
                ("X-AppEngine-QueueName", row["queue_name"]),
                ("X-AppEngine-TaskName", row["name"]),
                ("X-AppEngine-TaskRetryCount", str(row["retry_count"])),
                ("X-AppEngine-TaskETA", eta_header(row["eta"])),
                ("X-AppEngine-TaskExecutionCount", str(row["execution_count"])),
            ]
            entry: dict[str, Any] = {
                "name": row["name"],
                "queue_name": row["queue_name"],
                "url": row["url"],
                "method": row["method"],
                "eta": row["eta"].strftime("%Y/%m/%d %H:%M:%S"),
                "eta_usec": eta_usec,
                "body": base64.b64encode(payload),
                "headers": headers,
                "creation_time_usec": int(round(row["enqueued_at"].timestamp() * 1_000_000)),
                "retry_count": row["retry_count"],
                "execution_count": row["execution_count"],
            }
            if row["tag"] is not None:
                entry["tag"] = row["tag"]
            if row["dispatch_deadline_usec"] is not None:
                entry["dispatch_deadline_usec"] = row["dispatch_deadline_usec"]
            tasks.append(entry)
        return tasks

    def GetQueues(self) -> list[dict[str, Any]]:  # noqa: N802 (App Engine's name)
        """Return the configured queues as dicts of `name`, `mode` and `tasks_in_queue`."""
        counts = dict(_live_rows().order_by().values_list("queue_name").annotate(n=Count("id")))
        return [
            {"name": name, "mode": config.mode, "tasks_in_queue": counts.get(name, 0)}
            for name, config in sorted(all_queue_configs().items())
        ]

    def DeleteTask(self, queue_name: str, task_name: str) -> None:  # noqa: N802
        """Delete a task without leaving a tombstone: its name is free again."""
        self._delete(TaskRecord.objects.filter(queue_name=queue_name, name=task_name))

    def FlushQueue(self, queue_name: str) -> None:  # noqa: N802 (App Engine's name)
        """Delete every task of a queue, tombstones included: all its names are free again."""
        self._delete(TaskRecord.objects.filter(queue_name=queue_name))

    def _delete(self, rows: Any) -> None:
        alias = taskqueue_settings.DATABASE
        rows = rows.using(alias)
        names = list(rows.values_list("queue_name", "name"))
        rows.delete()
        for queue_name, name in names:
            DeferredPayload.objects.using(alias).filter(
                queue_name=queue_name, task_name=name
            ).delete()

    def run_due_tasks(self, queue_names: str | Iterable[str] | None = None) -> int:
        """Run the due push tasks (see module `run_tasks`); return how many ran."""
        return run_tasks(queue_names)

    # snake_case twins, for code written fresh
    get_tasks = GetTasks
    get_queues = GetQueues
    delete_task = DeleteTask
    flush_queue = FlushQueue
