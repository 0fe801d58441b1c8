"""Direct calls: push tasks the worker runs as Python calls instead of HTTP requests.

A module that owns a url (the `deferred` library owns `/_ah/queue/deferred`) registers a
handler for its path. The worker runs a due task whose url path has a handler by calling the
handler with a `DirectCall`, with the same leases, retries, deadlines, rate limits and
statistics as an HTTP task, but without the request/response round trip.

A handler's outcome: returning is success (its JSON-serializable return value is kept as the
task's `return_value`); raising `PermanentTaskFailure` fails the task for good with no retry;
raising `SingularTaskFailure` retries it without logging an error (App Engine's 408); any other
exception is a failure retried by the retry policy, its traceback recorded.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


class Error(Exception):
    """Base of the failures a direct call raises on purpose (App Engine's `deferred.Error`)."""


class PermanentTaskFailure(Error):
    """The task failed and must not be retried."""


class SingularTaskFailure(Error):
    """The task failed this once: retry it without reporting an error."""


class LazyHeaders(Mapping[str, str]):
    """The headers of an attempt, built (and signed) the first time a handler reads them.

    Most direct handlers never look at their headers: signing them for every call cost as much
    as running a no-op task.
    """

    __slots__ = ("_build", "_headers")

    def __init__(self, build: Callable[[], dict[str, str]]) -> None:
        self._build: Callable[[], dict[str, str]] | None = build
        self._headers: dict[str, str] = {}

    def _data(self) -> dict[str, str]:
        if self._build is not None:
            self._headers, self._build = self._build(), None
        return self._headers

    def __getitem__(self, key: str) -> str:
        return self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def __repr__(self) -> str:
        return repr(self._data())


@dataclass(frozen=True)
class DirectCall:
    """What a direct handler receives about the task it runs."""

    queue_name: str
    task_name: str
    task_id: int
    url: str
    payload: bytes | None
    #: The request headers an HTTP delivery would send, signature included (built on first read).
    headers: Mapping[str, str] = field(default_factory=dict)
    retry_count: int = 0
    execution_count: int = 0
    eta: datetime.datetime | None = None
    #: The rest of the task's row as the claim read it, so a handler that reports on the
    #: task (the Django Tasks backend's results) needs no query of its own.
    priority: int = 0
    enqueued_at: datetime.datetime | None = None
    first_attempt_at: datetime.datetime | None = None
    leased_at: datetime.datetime | None = None
    worker_id: str | None = None
    errors: list[Any] = field(default_factory=list)

    @property
    def attempt(self) -> int:
        """1 on the first attempt, 2 on the first retry, ..."""
        return self.execution_count + 1


DirectHandler = Callable[[DirectCall], Any]

#: The urls of the package's own direct handlers (registered by `handlers`).
DEFERRED_URL = "/_ah/queue/deferred"
DJANGO_TASKS_URL = "/_ah/queue/django-tasks"

_handlers: dict[str, DirectHandler] = {}


def register(path: str, handler: DirectHandler) -> None:
    """Run tasks whose url path is `path` by calling `handler` in the worker."""
    _handlers[path] = handler


def resolve(url: str) -> DirectHandler | None:
    """Return the handler for a task url (its query ignored), or None for HTTP delivery."""
    return _handlers.get(url.partition("?")[0])
