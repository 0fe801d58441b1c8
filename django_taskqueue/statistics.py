"""`QueueStatistics`: the figures of a queue, read from the task rows and the workers' records."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import clock, figures
from .conf import taskqueue_settings
from .exceptions import transient_on_database_errors
from .models import QueueState
from .rpc import UserRPC, check_deadline

if TYPE_CHECKING:
    from .taskqueue import Queue


class QueueStatistics:
    """Figures of one queue, read from the task rows and the workers' records.

    `tasks`: live tasks (waiting, leased or running). `oldest_eta_usec`: the earliest ETA of
    a waiting task, or None. `executed_last_minute`: attempts started (push) or leases taken
    (pull) in the last minute. `in_flight`: push tasks running now. `enforced_rate`: the rate
    the workers have been dispatching at (tasks/s, over about the last 10 seconds), None
    before any worker served the queue.
    Extensions: `executed_last_hour`, `leased` (pull tasks under a live lease),
    `failed_last_minute`, `failed_last_hour`, `paused`.
    """

    def __init__(
        self,
        queue: Queue,
        tasks: int | None = None,
        oldest_eta_usec: int | None = None,
        executed_last_minute: int | None = None,
        in_flight: int | None = None,
        enforced_rate: float | None = None,
        executed_last_hour: int | None = None,
        leased: int | None = None,
        failed_last_minute: int | None = None,
        failed_last_hour: int | None = None,
        paused: bool = False,
    ):
        self.queue = queue
        self.tasks = tasks
        self.oldest_eta_usec = oldest_eta_usec
        self.executed_last_minute = executed_last_minute
        self.in_flight = in_flight
        self.enforced_rate = enforced_rate
        self.executed_last_hour = executed_last_hour
        self.leased = leased
        self.failed_last_minute = failed_last_minute
        self.failed_last_hour = failed_last_hour
        self.paused = paused

    #: The figures App Engine's `QueueStatistics` has: equality and repr compare these.
    _ATTRS = (
        "queue",
        "tasks",
        "oldest_eta_usec",
        "executed_last_minute",
        "in_flight",
        "enforced_rate",
    )

    @classmethod
    def fetch(cls, queue_or_queues: Any, deadline: float = 10) -> Any:
        """Fetch statistics of a Queue or queue name, or of an iterable of either kind.

        A queue that is not configured has `tasks=0` and no other figure, as on App Engine.
        """
        check_deadline(deadline)
        return cls.fetch_async(queue_or_queues, UserRPC(deadline)).get_result()

    @classmethod
    def fetch_async(cls, queue_or_queues: Any, rpc: UserRPC | None = None) -> UserRPC:
        if isinstance(queue_or_queues, (_queue_class, str)):
            queue = _as_queue(queue_or_queues)
            return (rpc or UserRPC())._run(lambda: cls._fetch_one(queue))
        items = list(queue_or_queues)
        kinds = {type(item) for item in items}
        if kinds and not (kinds <= {_queue_class} or kinds <= {str}):
            raise TypeError("queue_or_queues must be only Queue objects or only names")
        queues = [_as_queue(item) for item in items]
        return (rpc or UserRPC())._run(lambda: [cls._fetch_one(q) for q in queues])

    @classmethod
    @transient_on_database_errors
    def _fetch_one(cls, queue: Queue) -> QueueStatistics:
        from .exceptions import UnknownQueueError

        try:
            config = queue.config
        except UnknownQueueError:
            return cls(queue, tasks=0)
        alias = taskqueue_settings.DATABASE
        now = clock.now()
        live = figures.of_queue(alias, queue.name, figures.live(now))
        recent = figures.of_queue(alias, queue.name, figures.executed(now))
        failed = figures.of_queue(alias, queue.name, figures.failed(now))
        state = QueueState.objects.using(alias).filter(name=queue.name).first()
        oldest = live["oldest_eta"]
        return cls(
            queue,
            tasks=live["tasks"],
            oldest_eta_usec=int(round(oldest.timestamp() * 1_000_000)) if oldest else None,
            executed_last_minute=recent["executed_last_minute"],
            in_flight=live["running"] if config.is_push else None,
            enforced_rate=(state.rate_at(now) if state else None) if config.is_push else None,
            executed_last_hour=recent["executed_last_hour"],
            leased=live["leased"] if config.is_pull else None,
            failed_last_minute=failed["failed_last_minute"],
            failed_last_hour=failed["failed_last_hour"],
            paused=config.paused_by_config or bool(state and state.paused),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QueueStatistics):
            return NotImplemented
        return all(getattr(self, a) == getattr(other, a) for a in self._ATTRS)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "QueueStatistics({})".format(
            ", ".join(f"{a}={getattr(self, a)!r}" for a in self._ATTRS)
        )


def _as_queue(item: Queue | str) -> Queue:
    return item if isinstance(item, _queue_class) else _queue_class(item)


#: `taskqueue.Queue`, handed over by `taskqueue` when it loads: that module imports this one, so
#: this one does not import it back.
_queue_class: Any = None
