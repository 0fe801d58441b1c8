"""Helpers for users' tests, in the manner of App Engine's testbed stub."""

from __future__ import annotations

from collections.abc import Iterable

from .conf import taskqueue_settings
from .models import LIVE_STATES, TaskRecord
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
)


def get_filtered_tasks(
    url: str | None = None,
    name: str | None = None,
    queue_names: str | Iterable[str] | None = None,
) -> list[Task]:
    """Return the live tasks (waiting, leased or running) that match every filter given.

    `url` matches a push task's full url (its queue's default url included); `queue_names`
    is a name or a list of names. Tasks come in ETA order.
    """
    rows = TaskRecord.objects.using(taskqueue_settings.DATABASE).filter(state__in=LIVE_STATES)
    if url is not None:
        rows = rows.filter(url=url)
    if name is not None:
        rows = rows.filter(name=name)
    if queue_names is not None:
        names = [queue_names] if isinstance(queue_names, str) else list(queue_names)
        rows = rows.filter(queue_name__in=names)
    return [
        Task._restore(row["queue_name"], row)
        for row in rows.order_by("eta", "id").values(*_COLUMNS)
    ]


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
    worker = Worker(queue_names, burst=True, rate_limits=False, run_sweeps=False)
    return worker.run()
