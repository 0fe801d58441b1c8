"""App Engine's `google.appengine.api.taskqueue`, name for name, on the Django database.

Change ``from google.appengine.api import taskqueue`` into
``from django_taskqueue import taskqueue`` and the calls keep their meaning: `add`, `Task`,
`Queue`, `QueueStatistics`, `TaskRetryOptions`, the constants and the exceptions. Where App
Engine's behaviour does not carry over to a SQL database, `docs/decisions.md` says what this
module does instead.
"""

from __future__ import annotations

import datetime
import functools
import logging
import math
import re
import secrets
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError, connections, transaction
from django.utils import timezone

from . import clock
from .conf import taskqueue_settings
from .db import TaskRow, operations
from .db.base import ANY_TAG
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
)
from .models import FINISHED_STATES, QueueState, TaskState
from .queues import QueueConfig, get_queue_config
from .retry import RetryParameters, effective_retry_parameters, may_lease_again

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

MAX_QUEUE_NAME_LENGTH = 100
MAX_TASK_NAME_LENGTH = 500
MAX_PUSH_TASK_SIZE_BYTES = 100 * (2**10)
MAX_TASK_SIZE_BYTES = MAX_PUSH_TASK_SIZE_BYTES
MAX_PULL_TASK_SIZE_BYTES = 2**20
MAX_TASKS_PER_ADD = 100
MAX_TASKS_PER_LEASE = 1000
MAX_TRANSACTIONAL_REQUEST_SIZE_BYTES = 2**20
MAX_URL_LENGTH = 2083
MAX_TAG_LENGTH = 500
MAX_LEASE_SECONDS = 3600 * 24 * 7
MAX_COUNTDOWN_SECONDS = 3600 * 24 * 30

DEFAULT_QUEUE = "default"
DEFAULT_QUEUE_PATH = "/_ah/queue"

_TASK_NAME_RE = re.compile(rf"^[a-zA-Z0-9_-]{{1,{MAX_TASK_NAME_LENGTH}}}$")
_QUEUE_NAME_RE = re.compile(rf"^[a-zA-Z0-9-]{{1,{MAX_QUEUE_NAME_LENGTH}}}$")
_PUSH_METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE"})
_BODY_METHODS = frozenset({"POST", "PUT", "PULL"})
_QUERY_METHODS = frozenset({"GET", "HEAD", "DELETE", "PUT"})


class _DefaultAppVersion:
    """The `target` that means "the version that runs the worker" (in-process delivery)."""

    def __repr__(self) -> str:
        return "DEFAULT_APP_VERSION"


DEFAULT_APP_VERSION = _DefaultAppVersion()


# -- retry options ---------------------------------------------------------------------------


class TaskRetryOptions:
    """The retry options of one task; a task that sets any of them ignores its queue's."""

    _NAMES = (
        "min_backoff_seconds",
        "max_backoff_seconds",
        "task_age_limit",
        "max_doublings",
        "task_retry_limit",
    )

    def __init__(self, **kwargs: Any):
        unknown = set(kwargs) - set(self._NAMES)
        if unknown:
            raise TypeError(f"Invalid arguments: {', '.join(sorted(unknown))}")
        values = {name: kwargs.get(name) for name in self._NAMES}
        for name, value in values.items():
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidTaskRetryOptionsError(f"{name} must be a number")
            if value < 0:
                raise InvalidTaskRetryOptionsError(f"{name} must be at least 0")
        low, high = values["min_backoff_seconds"], values["max_backoff_seconds"]
        if low is not None and high is not None and high < low:
            raise InvalidTaskRetryOptionsError(
                "max_backoff_seconds must be at least min_backoff_seconds"
            )
        if values["task_age_limit"] is not None:
            values["task_age_limit"] = int(math.ceil(values["task_age_limit"]))
        for name in ("max_doublings", "task_retry_limit"):
            if values[name] is not None:
                values[name] = int(values[name])
        self._values = values

    min_backoff_seconds = property(lambda self: self._values["min_backoff_seconds"])
    max_backoff_seconds = property(lambda self: self._values["max_backoff_seconds"])
    task_age_limit = property(lambda self: self._values["task_age_limit"])
    max_doublings = property(lambda self: self._values["max_doublings"])
    task_retry_limit = property(lambda self: self._values["task_retry_limit"])

    def to_dict(self) -> dict[str, int | float]:
        """Return the options that are set, as stored with the task."""
        return {k: v for k, v in self._values.items() if v is not None}

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | None) -> TaskRetryOptions | None:
        return cls(**options) if options else None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskRetryOptions) and other._values == self._values

    def __repr__(self) -> str:
        set_options = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"TaskRetryOptions({set_options})"


# -- tasks -----------------------------------------------------------------------------------


def _parse_relative_url(url: str) -> tuple[str, str]:
    """Split a relative url into path and query, as App Engine validates it."""
    if not url:
        return "", ""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme or parts.netloc:
        raise InvalidUrlError("Task URL must be relative; it may not name a scheme or host")
    if parts.fragment:
        raise InvalidUrlError("Task URL may not have a fragment")
    if not parts.path.startswith("/"):
        raise InvalidUrlError("Task URL must start with a slash")
    if len(parts.path) > MAX_URL_LENGTH:
        raise InvalidUrlError(f"Task URL path must be at most {MAX_URL_LENGTH} characters")
    return parts.path, parts.query


def _encode_params(params: Mapping[str, Any]) -> str:
    pairs: list[tuple[Any, Any]] = []
    for key, value in params.items():
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            pairs.append((key, value))
        else:
            pairs.extend((key, v) for v in value)
    return urllib.parse.urlencode(pairs)


def _header_items(headers: Mapping[str, Any]) -> list[list[str]]:
    items = []
    for key, value in headers.items():
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            values = [value]
        else:
            values = list(value)
        for v in values:
            items.append([str(key), v.decode() if isinstance(v, bytes) else str(v)])
    return items


def _aware(eta: datetime.datetime) -> datetime.datetime:
    if timezone.is_naive(eta):
        # A naive ETA is in Django's current time zone, as everywhere else in Django.
        eta = timezone.make_aware(eta, timezone.get_current_timezone())
    return eta.astimezone(datetime.UTC)


def _check_eta(eta: datetime.datetime, now: datetime.datetime) -> None:
    if (eta - now).total_seconds() > MAX_COUNTDOWN_SECONDS:
        raise InvalidEtaError("ETA too far in the future: at most 30 days ahead")


def _new_task_name() -> str:
    # Random and non-sequential: sequential names crowd one end of the name index.
    return secrets.token_hex(16)


class Task:
    """One task: an HTTP request for a push queue, or a payload for a pull queue.

    Raises `InvalidTaskError` (or a subclass) on invalid arguments, `TaskTooLargeError` when
    the task is larger than its queue kind allows, `InvalidEtaError` for an ETA more than
    30 days ahead, and `InvalidTagError` for a tag longer than `MAX_TAG_LENGTH`.
    """

    __CONSTRUCTOR_KWARGS = frozenset(
        {
            "countdown",
            "eta",
            "headers",
            "method",
            "name",
            "params",
            "retry_options",
            "tag",
            "target",
            "url",
            "_size_check",
        }
    )

    def __init__(self, payload: bytes | str | None = None, **kwargs: Any):
        unknown = set(kwargs) - self.__CONSTRUCTOR_KWARGS
        if unknown:
            raise TypeError(f"Invalid arguments: {', '.join(sorted(unknown))}")

        method = str(kwargs.get("method") or "POST").upper()
        if method not in _PUSH_METHODS and method != "PULL":
            raise InvalidTaskError(f"Invalid method: {method}")

        name = kwargs.get("name")
        if name is not None and (not isinstance(name, str) or not _TASK_NAME_RE.fullmatch(name)):
            raise InvalidTaskNameError(
                f"Task name does not match expression {_TASK_NAME_RE.pattern!r}; found {name!r}"
            )

        headers: dict[str, Any] = {}
        for key, value in (kwargs.get("headers") or {}).items():
            # App Engine drops X-AppEngine-* headers supplied by the caller: the queue sets
            # its own, and handlers trust them.
            if not str(key).lower().startswith("x-appengine-"):
                headers[key] = value
        lower_headers = {k.lower() for k in headers}

        if payload is not None and not isinstance(payload, (bytes, str)):
            raise InvalidTaskError("payload must be bytes or str")
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
            if method != "PULL" and "content-type" not in lower_headers:
                headers["Content-Type"] = "text/plain; charset=utf-8"

        url = kwargs.get("url") or ""
        if not isinstance(url, str):
            raise InvalidUrlError("url must be a string")
        path, query = _parse_relative_url(url)

        params = kwargs.get("params") or {}
        if params and query:
            raise InvalidTaskError("Query string in url and params given; use one of them")
        if method in _BODY_METHODS and method != "PUT":
            if query and method == "POST":
                raise InvalidTaskError("POST url may not have a query string; use params")
            if params:
                if payload is not None:
                    raise InvalidTaskError("Message body and params given; use one of them")
                payload = _encode_params(params).encode("ascii")
                if method == "POST" and "content-type" not in {k.lower() for k in headers}:
                    headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif params:
            query = _encode_params(params)
        if payload is not None and method not in _BODY_METHODS:
            raise InvalidTaskError(
                f"Payload may only be given for POST, PUT and PULL tasks, not {method}"
            )

        target = kwargs.get("target")
        tag = kwargs.get("tag")
        if method == "PULL":
            if url:
                raise InvalidTaskError("url must not be given for pull tasks")
            if headers:
                raise InvalidTaskError("headers must not be given for pull tasks")
            if target is not None:
                raise InvalidTaskError("target must not be given for pull tasks")
        else:
            if tag is not None:
                raise InvalidTaskError("tag can only be specified for pull tasks")
            if target is not None and "host" in {k.lower() for k in headers}:
                raise InvalidTaskError("A task may not have both a target and a Host header")
        if isinstance(tag, bytes):
            tag = tag.decode("utf-8")
        if tag is not None and not isinstance(tag, str):
            raise InvalidTaskError("tag must be a string")
        if target is not None and target is not DEFAULT_APP_VERSION and not isinstance(target, str):
            raise InvalidTaskError("target must be a string")

        countdown, eta = kwargs.get("countdown"), kwargs.get("eta")
        now = clock.now()
        if countdown is not None and eta is not None:
            raise InvalidTaskError("Cannot use a countdown and ETA together")
        if countdown is not None:
            if isinstance(countdown, bool) or not isinstance(countdown, (int, float)):
                raise InvalidTaskError("countdown must be a number of seconds")
            eta = now + datetime.timedelta(seconds=countdown)
        elif eta is not None:
            if not isinstance(eta, datetime.datetime):
                raise InvalidTaskError("eta must be a datetime.datetime")
            eta = _aware(eta)
        else:
            eta = now
        _check_eta(eta, now)

        retry_options = kwargs.get("retry_options")
        if retry_options is not None and not isinstance(retry_options, TaskRetryOptions):
            raise InvalidTaskError("retry_options must be a TaskRetryOptions")

        self._method = method
        self._name = name
        self._payload = payload
        self._headers = headers
        self._path = path
        self._query = query
        self._eta = eta
        self._tag = tag
        self._target = target
        self._retry_options = retry_options
        self._queue_name: str | None = None
        self._retry_count = 0
        self._execution_count = 0
        self._was_enqueued = False
        self._was_deleted = False
        self._stored_url: str | None = None
        #: Dispatch priority among due tasks of a queue (used by the Django Tasks backend).
        self._priority = 0

        if kwargs.get("_size_check", True):
            if tag is not None and len(tag) > MAX_TAG_LENGTH:
                raise InvalidTagError(f"Tag must be at most {MAX_TAG_LENGTH} characters")
            limit = MAX_PULL_TASK_SIZE_BYTES if method == "PULL" else MAX_PUSH_TASK_SIZE_BYTES
            if self.size > limit:
                raise TaskTooLargeError(f"Task size {self.size} is larger than {limit} bytes")

    @classmethod
    def _restore(cls, queue_name: str, row: Mapping[str, Any]) -> Task:
        """Rebuild a task read from the database."""
        task = cls.__new__(cls)
        url = row.get("url") or ""
        path, _, query = url.partition("?")
        payload = row.get("payload")
        task._method = row.get("method", "PULL")
        task._name = row["name"]
        task._payload = bytes(payload) if payload is not None else None
        task._headers = {}
        for key, value in row.get("headers") or []:
            if key in task._headers:
                previous = task._headers[key]
                task._headers[key] = (previous if isinstance(previous, list) else [previous]) + [
                    value
                ]
            else:
                task._headers[key] = value
        task._path = path
        task._query = query
        task._eta = row["eta"]
        task._tag = row.get("tag")
        task._target = row.get("target")
        task._retry_options = TaskRetryOptions.from_dict(row.get("retry_options"))
        task._queue_name = queue_name
        task._retry_count = row.get("retry_count", 0)
        task._execution_count = row.get("execution_count", 0)
        task._was_enqueued = True
        task._was_deleted = False
        task._stored_url = url
        task._priority = row.get("priority", 0)
        return task

    # -- properties, as App Engine's -------------------------------------------------------

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def payload(self) -> bytes | None:
        return self._payload

    @property
    def eta(self) -> datetime.datetime:
        """When the task is due, as an aware UTC datetime; for a leased task, its lease expiry."""
        return self._eta

    @property
    def eta_posix(self) -> float:
        return self._eta.timestamp()

    @property
    def _eta_usec(self) -> int:
        return int(round(self._eta.timestamp() * 1_000_000))

    @property
    def headers(self) -> dict[str, Any]:
        return dict(self._headers)

    @property
    def method(self) -> str:
        return self._method

    @property
    def url(self) -> str:
        """The relative url; '' (plus any query) when the task uses its queue's default url."""
        if self._stored_url is not None:
            return self._stored_url
        return self._path + (f"?{self._query}" if self._query else "")

    @property
    def on_queue_url(self) -> bool:
        return not self._path

    @property
    def queue_name(self) -> str | None:
        return self._queue_name

    @property
    def retry_count(self) -> int:
        """Previous attempts of a push task; leases so far (this one included) of a pull task."""
        return self._retry_count

    @property
    def retry_options(self) -> TaskRetryOptions | None:
        return self._retry_options

    @property
    def size(self) -> int:
        """The size App Engine counts against the limits: method, payload, url and headers."""
        headers = sum(len(k) + len(v) + 4 for k, v in _header_items(self._headers))
        return len(self._method) + len(self._payload or b"") + len(self.url) + headers

    @property
    def tag(self) -> str | None:
        return self._tag

    @property
    def target(self) -> Any:
        return self._target

    @property
    def was_enqueued(self) -> bool:
        return self._was_enqueued

    @property
    def was_deleted(self) -> bool:
        return self._was_deleted

    def extract_params(self) -> dict[str, Any]:
        """Return the task's parameters: from the payload (POST, PULL) or the url query.

        Repeated keys give lists; raises ValueError on a payload that is not form-encoded.
        """
        if self._method in ("POST", "PULL"):
            data = (self._payload or b"").decode("utf-8")
        else:
            data = self.url.partition("?")[2]
        if not data:
            return {}
        result: dict[str, Any] = {}
        for key, value in urllib.parse.parse_qsl(data, keep_blank_values=True, strict_parsing=True):
            if key in result:
                previous = result[key]
                result[key] = (previous if isinstance(previous, list) else [previous]) + [value]
            else:
                result[key] = value
        return result

    def add(self, queue_name: str = DEFAULT_QUEUE, transactional: bool = False) -> Task:
        """Add this task to the queue `queue_name` and return it."""
        return Queue(queue_name).add(self, transactional=transactional)

    def add_async(
        self,
        queue_name: str = DEFAULT_QUEUE,
        transactional: bool = False,
        rpc: UserRPC | None = None,
    ) -> UserRPC:
        return Queue(queue_name).add_async(self, transactional=transactional, rpc=rpc)

    async def aadd(self, queue_name: str = DEFAULT_QUEUE, transactional: bool = False) -> Task:
        return await Queue(queue_name).aadd(self, transactional=transactional)

    # -- storage ---------------------------------------------------------------------------

    def _stored_headers(self) -> list[list[str]]:
        return _header_items(self._headers)

    def __repr__(self) -> str:
        return (
            f"Task<name={self._name!r} queue={self._queue_name!r} method={self._method} "
            f"eta={self._eta.isoformat()}>"
        )


# -- RPC objects ------------------------------------------------------------------------------


class UserRPC:
    """The object the `*_async` calls return; `get_result()` gives the value or raises.

    The work runs when the call is made, on the caller's database connection, so that an
    asynchronous add inside `transaction.atomic()` is part of the transaction as a plain add
    is. For concurrency in async code, use the `a`-prefixed coroutines instead.
    """

    def __init__(self, deadline: float | None = None, callback: Callable[[], Any] | None = None):
        if deadline is not None:
            if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
                raise TypeError("deadline must be a number")
            if deadline <= 0:
                raise InvalidDeadlineError("deadline must be greater than 0")
        self.deadline = deadline
        self.callback = callback
        self._done = False
        self._result: Any = None
        self._exception: BaseException | None = None

    def _run(self, function: Callable[[], Any]) -> UserRPC:
        try:
            self._result = function()
        except Error as exc:
            self._exception = exc
        self._done = True
        if self.callback is not None:
            self.callback()
        return self

    def wait(self) -> None:
        """Return at once: the work is already done."""

    def check_success(self) -> None:
        if self._exception is not None:
            raise self._exception

    def get_result(self) -> Any:
        self.check_success()
        return self._result


def create_rpc(deadline: float | None = None, callback: Callable[[], Any] | None = None) -> UserRPC:
    """Create an RPC object for the `*_async` calls."""
    return UserRPC(deadline, callback)


def _check_deadline(deadline: Any) -> None:
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
        raise TypeError("deadline must be a number")
    if deadline <= 0:
        raise InvalidDeadlineError("deadline must be greater than 0")


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


def _transient_on_database_errors(method: Callable[..., Any]) -> Callable[..., Any]:
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


# -- queues ----------------------------------------------------------------------------------


class Queue:
    """A queue of `queue.yaml` (or `TASKQUEUE["QUEUES"]`); `default` always exists.

    The name is checked here (`InvalidQueueNameError`); whether the queue exists is checked
    by each operation (`UnknownQueueError`), as on App Engine.
    """

    def __init__(self, name: str = DEFAULT_QUEUE):
        if not isinstance(name, str) or not _QUEUE_NAME_RE.fullmatch(name):
            raise InvalidQueueNameError(
                f"Queue name does not match pattern {_QUEUE_NAME_RE.pattern!r}; found {name!r}"
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

    @_transient_on_database_errors
    def add(self, task: Task | Iterable[Task], transactional: bool = False) -> Any:
        """Add a task or a list of up to 100 tasks; return what was given.

        A task added inside `transaction.atomic()` on the queue's database is part of that
        transaction. Raises `TooManyTasksError`, `DuplicateTaskNameError`, `BadTaskStateError`
        (a task already added, a pull task without payload), `InvalidTaskError` (push and pull
        tasks mixed), `UnknownQueueError`, `InvalidQueueModeError`, `BadTransactionStateError`
        (`transactional=True` outside a transaction), and for named tasks
        `TaskAlreadyExistsError` or `TombstonedTaskError` after adding every other task.
        """
        if not task:
            return []
        single = isinstance(task, Task)
        tasks = [task] if single else list(task)
        if not tasks:
            return []
        self._add(tasks, transactional)
        return task if single or isinstance(task, list) else tasks

    def add_async(
        self, task: Task | Iterable[Task], transactional: bool = False, rpc: UserRPC | None = None
    ) -> UserRPC:
        return (rpc or UserRPC())._run(lambda: self.add(task, transactional))

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
        pull = {task.method == "PULL" for task in tasks}
        if len(pull) > 1:
            raise InvalidTaskError("Can not add both push and pull tasks in one request")
        is_pull = pull.pop()
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
                raise InvalidTaskError(
                    f"Unknown target {target!r}: name an entry of TASKQUEUE['TARGETS']"
                )

        alias = self._alias()
        connection = connections[alias]
        carrier = None
        if transactional and not connection.in_atomic_block:
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

        rows = []
        for task in tasks:
            url = task._path or f"{DEFAULT_QUEUE_PATH}/{self._name}"
            if task._query:
                url = f"{url}?{task._query}"
            target = task.target
            rows.append(
                TaskRow(
                    queue_name=self._name,
                    name=task.name or _new_task_name(),
                    method=task.method,
                    url="" if is_pull else url,
                    headers=task._stored_headers(),
                    payload=task.payload,
                    tag=task.tag,
                    target=target if isinstance(target, str) else None,
                    eta=task.eta,
                    enqueued_at=now,
                    retry_options=task.retry_options.to_dict() if task.retry_options else None,
                    priority=task._priority,
                )
            )

        if carrier is not None:
            # The caller's transaction is on another database: the rows follow it when it
            # commits, and are never written if it rolls back.
            transaction.on_commit(lambda: self._insert_carried(rows), using=carrier)
            for task, row in zip(tasks, rows, strict=True):
                self._mark_enqueued(task, row)
            return

        inserted = self._insert(rows, now)
        error: Error | None = None
        for task, row in zip(tasks, rows, strict=True):
            if row.name in inserted:
                self._mark_enqueued(task, row)
            elif error is None:
                error = inserted.conflicts[row.name]
        if error is not None:
            raise error

    def _mark_enqueued(self, task: Task, row: TaskRow) -> None:
        task._name = row.name
        task._queue_name = self._name
        task._was_enqueued = True
        if not task.method == "PULL":
            task._stored_url = row.url if task._path else None

    def _insert(self, rows: list[TaskRow], now: datetime.datetime) -> _Inserted:
        ops = operations(self._alias())
        push = rows[0].method != "PULL"
        inserted = _Inserted(ops.insert(rows, notify=push))
        missing = [row.name for row in rows if row.name not in inserted]
        if not missing:
            return inserted
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

    def _insert_carried(self, rows: list[TaskRow]) -> None:
        try:
            self._insert(rows, clock.now())
        except Exception:
            logger.exception("event=carried_add_failed queue=%s tasks=%s", self._name, len(rows))

    # -- pull ------------------------------------------------------------------------------

    def lease_tasks(self, lease_seconds: float, max_tasks: int, deadline: float = 10) -> list[Task]:
        """Lease up to `max_tasks` due tasks of this pull queue for `lease_seconds`.

        Each leased task's `eta` becomes its lease expiry and its `retry_count` counts this
        lease. Oldest ETA first. Raises `InvalidLeaseTimeError`, `InvalidMaxTasksError`,
        `InvalidQueueModeError` (push queue), `UnknownQueueError`.
        """
        return self._lease(lease_seconds, max_tasks, deadline, group_by_tag=False, tag=None)

    def lease_tasks_async(
        self, lease_seconds: float, max_tasks: int, rpc: UserRPC | None = None
    ) -> UserRPC:
        return (rpc or UserRPC())._run(lambda: self.lease_tasks(lease_seconds, max_tasks))

    def lease_tasks_by_tag(
        self, lease_seconds: float, max_tasks: int, tag: str | None = None, deadline: float = 10
    ) -> list[Task]:
        """Lease due tasks that share a tag: `tag`, or the oldest task's tag when None.

        When `tag` is None and the oldest due task has no tag, only untagged tasks among the
        oldest `max_tasks` are leased.
        """
        return self._lease(lease_seconds, max_tasks, deadline, group_by_tag=True, tag=tag)

    def lease_tasks_by_tag_async(
        self,
        lease_seconds: float,
        max_tasks: int,
        tag: str | None = None,
        rpc: UserRPC | None = None,
    ) -> UserRPC:
        return (rpc or UserRPC())._run(
            lambda: self.lease_tasks_by_tag(lease_seconds, max_tasks, tag)
        )

    @_transient_on_database_errors
    def _lease(
        self,
        lease_seconds: float,
        max_tasks: int,
        deadline: float,
        group_by_tag: bool,
        tag: str | None,
    ) -> list[Task]:
        _check_lease_seconds(lease_seconds)
        _check_max_tasks(max_tasks)
        _check_deadline(deadline)
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
        return [Task._restore(self._name, {**row, "method": "PULL"}) for row in rows]

    @_transient_on_database_errors
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
            task._eta = new_eta
            return
        row = ops.existing(self._name, [task.name]).get(task.name)
        if row is None:
            raise UnknownTaskError(f"No task named {task.name!r} in queue {self._name!r}")
        if row["state"] in FINISHED_STATES:
            raise TombstonedTaskError(f"The task {task.name!r} has finished or was deleted")
        raise TaskLeaseExpiredError(f"The lease on task {task.name!r} has expired or changed")

    # -- delete ----------------------------------------------------------------------------

    @_transient_on_database_errors
    def delete_tasks(self, task: Task | Iterable[Task]) -> Any:
        """Delete tasks by name; each task's `was_deleted` says whether it was live.

        Unknown and already finished names are not an error (`was_deleted` stays False).
        Raises `BadTaskStateError` for an unnamed or already deleted task and
        `DuplicateTaskNameError` for a name given twice.
        """
        single = isinstance(task, Task)
        tasks = [task] if single else list(task)
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
            deleted = operations(self._alias()).delete_by_names(self._name, names, clock.now())
            for t in tasks:
                if t.name in deleted:
                    t._was_deleted = True
        return task if single or isinstance(task, list) else tasks

    def delete_tasks_async(
        self, task: Task | Iterable[Task], rpc: UserRPC | None = None
    ) -> UserRPC:
        return (rpc or UserRPC())._run(lambda: self.delete_tasks(task))

    def delete_tasks_by_name(self, task_name: str | Iterable[str]) -> Any:
        """Delete tasks by name; return the `Task` objects (one, or a list) with `was_deleted`."""
        if isinstance(task_name, str):
            return self.delete_tasks(Task(name=task_name))
        return self.delete_tasks([Task(name=name) for name in task_name])

    def delete_tasks_by_name_async(
        self, task_name: str | Iterable[str], rpc: UserRPC | None = None
    ) -> UserRPC:
        return (rpc or UserRPC())._run(lambda: self.delete_tasks_by_name(task_name))

    @_transient_on_database_errors
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
        return QueueStatistics.fetch(self, deadline=deadline)

    def fetch_statistics_async(self, rpc: UserRPC | None = None) -> UserRPC:
        return (rpc or UserRPC())._run(lambda: self.fetch_statistics())

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


# -- statistics ------------------------------------------------------------------------------


class QueueStatistics:
    """Figures of one queue, read from the task rows and the workers' records.

    `tasks`: live tasks (waiting, leased or running). `oldest_eta_usec`: the earliest ETA of
    a waiting task, or None. `executed_last_minute`: attempts started (push) or leases taken
    (pull) in the last minute. `in_flight`: push tasks running now. `enforced_rate`: the rate
    the workers last measured dispatching (tasks/s), None before any worker served the queue.
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

    @classmethod
    def fetch(cls, queue_or_queues: Any, deadline: float = 10) -> Any:
        """Fetch statistics of a Queue or queue name, or of an iterable of either kind."""
        _check_deadline(deadline)
        if isinstance(queue_or_queues, (Queue, str)):
            return cls._fetch_one(_as_queue(queue_or_queues))
        items = list(queue_or_queues)
        kinds = {type(item) for item in items}
        if kinds and not (kinds <= {Queue} or kinds <= {str}):
            raise TypeError("queue_or_queues must be only Queue objects or only names")
        return [cls._fetch_one(_as_queue(item)) for item in items]

    @classmethod
    def fetch_async(cls, queue_or_queues: Any, rpc: UserRPC | None = None) -> UserRPC:
        return (rpc or UserRPC())._run(lambda: cls.fetch(queue_or_queues))

    @classmethod
    @_transient_on_database_errors
    def _fetch_one(cls, queue: Queue) -> QueueStatistics:
        from django.db.models import Count, Min, Q

        from .models import TaskRecord

        config = queue.config
        alias = Queue._alias()
        now = clock.now()
        minute = now - datetime.timedelta(minutes=1)
        hour = now - datetime.timedelta(hours=1)
        records = TaskRecord.objects.using(alias).filter(queue_name=queue.name)
        live = records.filter(state__in=(TaskState.QUEUED, TaskState.RUNNING)).aggregate(
            tasks=Count("id"),
            oldest=Min("eta", filter=Q(state=TaskState.QUEUED)),
            running=Count("id", filter=Q(state=TaskState.RUNNING)),
            leased=Count("id", filter=Q(method="PULL", leased_at__isnull=False, eta__gt=now)),
        )
        recent = records.filter(leased_at__gte=hour).aggregate(
            hour=Count("id"), minute=Count("id", filter=Q(leased_at__gte=minute))
        )
        failed = records.filter(state=TaskState.FAILED, finished_at__gte=hour).aggregate(
            hour=Count("id"), minute=Count("id", filter=Q(finished_at__gte=minute))
        )
        state = QueueState.objects.using(alias).filter(name=queue.name).first()
        oldest = live["oldest"]
        return cls(
            queue,
            tasks=live["tasks"],
            oldest_eta_usec=int(round(oldest.timestamp() * 1_000_000)) if oldest else None,
            executed_last_minute=recent["minute"],
            in_flight=live["running"] if config.is_push else None,
            enforced_rate=(state.enforced_rate if state else None) if config.is_push else None,
            executed_last_hour=recent["hour"],
            leased=live["leased"] if config.is_pull else None,
            failed_last_minute=failed["minute"],
            failed_last_hour=failed["hour"],
            paused=config.paused_by_config or bool(state and state.paused),
        )

    def __repr__(self) -> str:
        return (
            f"QueueStatistics(queue={self.queue.name!r}, tasks={self.tasks}, "
            f"oldest_eta_usec={self.oldest_eta_usec}, "
            f"executed_last_minute={self.executed_last_minute}, in_flight={self.in_flight}, "
            f"enforced_rate={self.enforced_rate})"
        )


def _as_queue(item: Queue | str) -> Queue:
    return item if isinstance(item, Queue) else Queue(item)


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
