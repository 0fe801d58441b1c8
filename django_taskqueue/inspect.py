"""Read-only views of a queue's live tasks: one task with its payload, pages of tasks by ETA.

App Engine's REST API could get and list the tasks of a pull queue, which its Python API could
not. These functions fill that gap for the REST layer and for anyone else who needs to look
without leasing:

    from django_taskqueue import inspect

    info = inspect.get_task("reports", "build-42")       # TaskInfo, payload included
    page = inspect.list_tasks("reports", tag="daily", limit=50)
    more = inspect.list_tasks("reports", tag="daily", after=page[-1].position)

Only live tasks are seen (waiting, leased or running); finished and deleted names are
tombstones, not tasks. Nothing here changes a task.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Q

from .conf import taskqueue_settings
from .db.rows import ANY_TAG
from .models import LIVE, TaskRecord
from .queues import get_queue_config

__all__ = ["TaskInfo", "get_task", "list_tasks", "enqueued_times", "ANY_TAG"]

#: `list_tasks(tag=ANY_TAG)` (the default): tasks with any tag or none.

_COLUMNS = ("name", "method", "tag", "eta", "retry_count", "enqueued_at", "leased_at")


@dataclass(frozen=True)
class TaskInfo:
    """What a reader may know of one live task. `payload` is None in listings."""

    queue_name: str
    name: str
    method: str
    tag: str | None
    #: When the task is next due; for a leased pull task, its lease expiry.
    eta: datetime.datetime
    #: Leases taken so far (pull) or previous attempts (push).
    retry_count: int
    enqueued_at: datetime.datetime
    #: When the task was last leased (pull) or claimed (push); None before that.
    leased_at: datetime.datetime | None
    payload: bytes | None = None

    @property
    def position(self) -> tuple[datetime.datetime, str]:
        """The key that orders listings: pass it as `after` to get the next page."""
        return (self.eta, self.name)


def _tasks(queue_name: str) -> Any:
    get_queue_config(queue_name)  # InvalidQueueNameError, UnknownQueueError
    return TaskRecord.objects.using(taskqueue_settings.DATABASE).filter(LIVE, queue_name=queue_name)


def _info(queue_name: str, row: dict[str, Any]) -> TaskInfo:
    payload = row.get("payload")
    return TaskInfo(
        queue_name=queue_name,
        payload=bytes(payload) if payload is not None else None,
        **{column: row[column] for column in _COLUMNS},
    )


def get_task(queue_name: str, name: str) -> TaskInfo:
    """Return the live task `name` of `queue_name`, payload included.

    Raises `UnknownQueueError` or `InvalidQueueNameError` for the queue, `InvalidTaskNameError`
    for a malformed name, and `UnknownTaskError` when no live task has that name (never added,
    or finished or deleted).
    """
    from .exceptions import UnknownTaskError
    from .taskqueue import Task

    Task(b"", name=name, method="PULL")  # checks the name as the Python API does
    row = _tasks(queue_name).filter(name=name).values(*_COLUMNS, "payload").first()
    if row is None:
        raise UnknownTaskError(f"No task named {name!r} in queue {queue_name!r}")
    return _info(queue_name, row)


def list_tasks(
    queue_name: str,
    *,
    tag: Any = ANY_TAG,
    after: tuple[datetime.datetime, str] | None = None,
    limit: int = 100,
) -> list[TaskInfo]:
    """Return up to `limit` live tasks of `queue_name`, by ETA then name, without payloads.

    `tag`: only tasks with this tag (None: only untagged tasks; the default: any).
    `after`: the `position` of the last task of the previous page; the page starts after it.
    Raises `UnknownQueueError`, `InvalidQueueNameError`, and `ValueError` for a `limit`
    below 1.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError("limit must be an int, 1 or more")
    rows = _tasks(queue_name)
    if tag is not ANY_TAG:
        rows = rows.filter(tag__isnull=True) if tag is None else rows.filter(tag=tag)
    if after is not None:
        eta, name = after
        # Keyset pagination on the unique (eta, name) order: stable while tasks come and go.
        rows = rows.filter(Q(eta__gt=eta) | Q(eta=eta, name__gt=name))
    rows = rows.order_by("eta", "name").values(*_COLUMNS)[:limit]
    return [_info(queue_name, row) for row in rows]


def enqueued_times(queue_name: str, names: Iterable[str]) -> dict[str, datetime.datetime]:
    """Return when each live task among `names` was added, by name (unknown names are left out)."""
    names = list(names)
    if not names:
        return {}
    rows = _tasks(queue_name).filter(name__in=names).values_list("name", "enqueued_at")
    return dict(rows)
