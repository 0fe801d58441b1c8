"""`Task` and `TaskRetryOptions`: one task's request or payload, validated as App Engine does."""

from __future__ import annotations

import datetime
import logging
import math
import secrets
import urllib.parse
from collections import UserDict
from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from . import clock
from .conf import taskqueue_settings
from .exceptions import (
    InvalidDispatchDeadlineError,
    InvalidEtaError,
    InvalidTagError,
    InvalidTaskError,
    InvalidTaskNameError,
    InvalidUrlError,
    TaskTooLargeError,
)
from .limits import (
    DEFAULT_QUEUE,
    MAX_COUNTDOWN_SECONDS,
    MAX_DISPATCH_DEADLINE,
    MAX_PULL_TASK_SIZE_BYTES,
    MAX_PUSH_TASK_SIZE_BYTES,
    MAX_TAG_LENGTH,
    MAX_URL_LENGTH,
    MIN_DISPATCH_DEADLINE,
    TASK_NAME_RE,
)
from .retry import check_backoff_order, check_retry_option

if TYPE_CHECKING:
    from .rpc import UserRPC

logger = logging.getLogger("django_taskqueue")

#: The namespace header App Engine's client adds to every task (Django has one namespace: "").
NAMESPACE_HEADER = "X-AppEngine-Current-Namespace"
#: The header of a cron job's request: set only by the cron service, never by a caller.
CRON_HEADER = "X-AppEngine-Cron"

_PUSH_METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE"})
_BODY_METHODS = frozenset({"POST", "PUT", "PULL"})


class _DefaultAppVersion:
    """The `target` that means "the version that runs the worker" (in-process delivery)."""

    def __repr__(self) -> str:
        return "DEFAULT_APP_VERSION"


DEFAULT_APP_VERSION = _DefaultAppVersion()


class CaselessDict(UserDict):
    """A dict of headers whose keys match whatever their case; a key keeps the case last set.

    Equal to a plain dict with the same keys spelled the same way, as App Engine's.
    """

    def __init__(self, data: Mapping[str, Any] | None = None):
        self._keys: dict[str, str] = {}
        super().__init__(data or {})

    def __setitem__(self, key: str, value: Any) -> None:
        folded = key.lower()
        if folded in self._keys:
            del self.data[self._keys[folded]]
        self._keys[folded] = key
        self.data[key] = value

    def __getitem__(self, key: str) -> Any:
        return self.data[self._keys[key.lower()]]

    def __delitem__(self, key: str) -> None:
        folded = key.lower()
        del self.data[self._keys.pop(folded)]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._keys

    # Every Task builds one of these: the methods below skip the generic Mapping mixins, which
    # go through __getitem__ and catch KeyError for each call.

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def items(self) -> ItemsView[str, Any]:
        return self.data.items()

    def get(self, key: str, default: Any = None) -> Any:
        stored = self._keys.get(key.lower())
        return default if stored is None else self.data[stored]

    def setdefault(self, key: str, default: Any = None) -> Any:
        stored = self._keys.get(key.lower())
        if stored is not None:
            return self.data[stored]
        self[key] = default
        return default

    _MISSING: Any = object()

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        stored = self._keys.pop(key.lower(), None)
        if stored is None:
            if default is CaselessDict._MISSING:
                raise KeyError(key)
            return default
        return self.data.pop(stored)

    def copy(self) -> CaselessDict:
        return CaselessDict(self.data)


def check_dispatch_deadline(dispatch_deadline_usec: Any) -> None:
    """Check a `dispatch_deadline_usec` as App Engine does (TypeError, InvalidDispatchDeadline)."""
    if isinstance(dispatch_deadline_usec, bool) or not isinstance(dispatch_deadline_usec, int):
        raise TypeError("dispatch_deadline_usec must be an integer")
    deadline = datetime.timedelta(microseconds=dispatch_deadline_usec)
    if deadline > MAX_DISPATCH_DEADLINE:
        raise InvalidDispatchDeadlineError(f"Deadline cannot be more than {MAX_DISPATCH_DEADLINE}")
    if deadline < MIN_DISPATCH_DEADLINE:
        raise InvalidDispatchDeadlineError(f"Deadline cannot be less than {MIN_DISPATCH_DEADLINE}")


def _target_from_host(host: str, hostname: str | None) -> Any:
    if hostname and host.endswith(hostname):
        version = host[: -(len(hostname) + 1)]
        if version:
            return version
    return DEFAULT_APP_VERSION


def _resolve_target(target: Any, headers: CaselessDict) -> Any:
    """Return a push task's target and set the Host it implies, as App Engine's client does.

    With `DEFAULT_VERSION_HOSTNAME` set, a target gives the Host `<target>.<hostname>` and a
    Host gives its target; without it, Host headers are left as given. No target and no
    Host means `DEFAULT_APP_VERSION`: the worker's own Django project.
    """
    hostname = taskqueue_settings.DEFAULT_VERSION_HOSTNAME
    if target is not None and "Host" in headers:
        raise InvalidTaskError("A Host header cannot be set when a target is specified")
    if target is not None:
        if hostname:
            headers["Host"] = hostname if target is DEFAULT_APP_VERSION else f"{target}.{hostname}"
        return target
    if "Host" in headers:
        return _target_from_host(str(headers["Host"]), hostname)
    if hostname:
        headers["Host"] = hostname
    return DEFAULT_APP_VERSION


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
            if value is not None:
                check_retry_option(name, value)
        check_backoff_order(values["min_backoff_seconds"], values["max_backoff_seconds"])
        if values["task_age_limit"] is not None:
            values["task_age_limit"] = int(math.ceil(values["task_age_limit"]))
        # The other options are kept as given, as App Engine keeps them.
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


def _headers_from_pairs(pairs: Iterable[Any] | None) -> CaselessDict:
    """The headers of stored [name, value] pairs: a repeated name gives a list of its values."""
    headers = CaselessDict()
    for key, value in pairs or ():
        if key in headers:
            previous = headers[key]
            headers[key] = (previous if isinstance(previous, list) else [previous]) + [value]
        else:
            headers[key] = value
    return headers


#: Set by `testing.TaskQueueStub` while it is active: the names of unnamed tasks (task1, ...).
_test_name_source: Callable[[], str] | None = None


def _new_task_name() -> str:
    if _test_name_source is not None:
        return _test_name_source()
    # Random and non-sequential: sequential names crowd one end of the name index.
    return secrets.token_hex(16)


class Task:
    """One task: an HTTP request for a push queue, or a payload for a pull queue.

    Raises `InvalidTaskError` (or a subclass) on invalid arguments, `TaskTooLargeError` when
    the task is larger than its queue kind allows, `InvalidEtaError` for an ETA more than
    30 days ahead, `InvalidTagError` for a tag longer than `MAX_TAG_LENGTH`, and
    `InvalidDispatchDeadlineError` for a `dispatch_deadline_usec` outside 15 s .. 24 h.
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
            "dispatch_deadline_usec",
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

        # App Engine treats an empty name as no name.
        name = kwargs.get("name") or None
        if name is not None and (not isinstance(name, str) or not TASK_NAME_RE.fullmatch(name)):
            raise InvalidTaskNameError(
                f"Task name does not match expression {TASK_NAME_RE.pattern!r}; found {name!r}"
            )

        given_headers = kwargs.get("headers") or {}
        # Every header the caller gives is kept, X-AppEngine-* directives included (App
        # Engine honours some, e.g. X-AppEngine-FailFast); the worker overwrites the ones the
        # queue itself sets. X-AppEngine-Cron is dropped: only the cron service marks a
        # request as cron's (handlers trust it, as on App Engine).
        headers = CaselessDict(given_headers)
        headers.pop(CRON_HEADER, None)
        headers.setdefault(NAMESPACE_HEADER, "")

        if payload is not None and not isinstance(payload, (bytes, str)):
            raise InvalidTaskError(f"Task payloads must be bytes or str; found {payload!r}")
        if isinstance(payload, str):
            if payload:
                headers.setdefault("content-type", "text/plain; charset=utf-8")
            payload = payload.encode("utf-8")

        url = kwargs.get("url") or ""
        if not isinstance(url, str):
            raise InvalidUrlError("url must be a string")
        path, query = _parse_relative_url(url)

        params = kwargs.get("params") or {}
        if params and query:
            raise InvalidTaskError("Query string in url and params given; use one of them")
        if method in ("POST", "PULL"):
            if query and method == "POST":
                raise InvalidTaskError("POST url may not have a query string; use params")
            if params:
                if payload:
                    raise InvalidTaskError("Message body and params given; use one of them")
                # App Engine's client keeps a POST body built from params as str, and
                # encodes a pull task's.
                encoded = _encode_params(params)
                if method == "POST":
                    headers.setdefault("content-type", "application/x-www-form-urlencoded")
                    payload = encoded
                else:
                    payload = encoded.encode("ascii")
        elif params:
            query = _encode_params(params)
        if payload and method not in _BODY_METHODS:
            raise InvalidTaskError(
                f"Payload may only be given for POST, PUT and PULL tasks, not {method}"
            )
        if payload is not None and not payload and method not in _BODY_METHODS:
            payload = None

        target = kwargs.get("target")
        tag = kwargs.get("tag")
        if method == "PULL":
            if url:
                raise InvalidTaskError("url must not be given for pull tasks")
            if given_headers:
                raise InvalidTaskError("headers must not be given for pull tasks")
            if target:
                raise InvalidTaskError("target must not be given for pull tasks")
            if payload is None:
                raise InvalidTaskError("payload must be given for a pull task")
            target = None
        elif tag is not None:
            raise InvalidTaskError("tag can only be specified for pull tasks")
        if isinstance(tag, bytes):
            tag = tag.decode("utf-8")
        if tag is not None and not isinstance(tag, str):
            raise InvalidTaskError("tag must be a string")
        if target is not None and target is not DEFAULT_APP_VERSION and not isinstance(target, str):
            raise InvalidTaskError("target must be a string")
        if method != "PULL":
            target = _resolve_target(target, headers)

        countdown, eta = kwargs.get("countdown"), kwargs.get("eta")
        now = clock.now()
        if countdown is not None and eta is not None:
            raise InvalidTaskError("Cannot use a countdown and ETA together")
        if countdown is not None:
            try:
                # App Engine takes anything float() takes: numeric strings too.
                seconds = float(countdown)
            except (TypeError, ValueError) as e:
                raise InvalidTaskError("Countdown must be a number") from e
            except OverflowError as e:
                raise InvalidTaskError("Countdown out of range") from e
            if not math.isfinite(seconds) or seconds > MAX_COUNTDOWN_SECONDS:
                raise InvalidEtaError("ETA too far in the future: at most 30 days ahead")
            try:
                eta = now + datetime.timedelta(seconds=seconds)
            except OverflowError as e:
                raise InvalidEtaError("ETA out of range") from e
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

        dispatch_deadline_usec = kwargs.get("dispatch_deadline_usec")

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
        self._dispatch_deadline_usec = dispatch_deadline_usec
        self._queue_name: str | None = None
        self._retry_count = 0
        self._execution_count = 0
        self._was_enqueued = False
        self._enqueued_at: datetime.datetime | None = None
        self._was_deleted = False
        self._stored_url: str | None = None
        #: Dispatch priority among due tasks of a queue (used by the Django Tasks backend).
        self._priority = 0

        if kwargs.get("_size_check", True):
            limit = MAX_PULL_TASK_SIZE_BYTES if method == "PULL" else MAX_PUSH_TASK_SIZE_BYTES
            if self.size > limit:
                raise TaskTooLargeError(f"Task size {self.size} is larger than {limit} bytes")
            if tag is not None and len(tag) > MAX_TAG_LENGTH:
                raise InvalidTagError(f"Tag must be at most {MAX_TAG_LENGTH} characters")
        if dispatch_deadline_usec is not None:
            check_dispatch_deadline(dispatch_deadline_usec)

    # A task read back from its queue keeps its stored [name, value] header pairs and builds
    # the CaselessDict only when something reads its headers: a lease of 1,000 pull tasks
    # builds none. Restored tasks only read their headers, so tasks of one lease may share
    # the same pairs.
    _built_headers: CaselessDict | None = None
    _header_pairs: Any = None
    #: The id of the task's row, for a task read back from its queue (None otherwise): lets
    #: `delete_tasks` find the rows by primary key (`Queue._delete_now`).
    _row_id: int | None = None

    @property
    def _headers(self) -> CaselessDict:
        headers = self._built_headers
        if headers is None:
            headers = self._built_headers = _headers_from_pairs(self._header_pairs)
        return headers

    @_headers.setter
    def _headers(self, headers: CaselessDict) -> None:
        self._built_headers = headers

    @classmethod
    def _restore(cls, queue_name: str, row: Mapping[str, Any]) -> Task:
        """Rebuild a task read from the database."""
        task = cls.__new__(cls)
        url = row.get("url") or ""
        path, _, query = url.partition("?")
        payload = row.get("payload")
        options = row.get("retry_options")
        # One dict built at once rather than 20 attribute writes: values read back from our
        # own rows were validated when the task was added.
        task.__dict__ = {
            "_method": row.get("method", "PULL"),
            "_name": row["name"],
            "_payload": payload if payload is None or type(payload) is bytes else bytes(payload),
            "_header_pairs": row.get("headers"),
            "_path": path,
            "_query": query,
            "_eta": row["eta"],
            "_tag": row.get("tag"),
            "_target": row.get("target"),
            "_retry_options": TaskRetryOptions(**options) if options else None,
            "_dispatch_deadline_usec": row.get("dispatch_deadline_usec"),
            "_queue_name": queue_name,
            "_retry_count": row.get("retry_count", 0),
            "_execution_count": row.get("execution_count", 0),
            "_was_enqueued": True,
            "_was_deleted": False,
            "_stored_url": url,
            "_priority": row.get("priority", 0),
            "_enqueued_at": row.get("enqueued_at"),
            "_row_id": row.get("id"),
        }
        return task

    @classmethod
    def _leased(cls, queue_name: str, row: Mapping[str, Any]) -> Task:
        """Rebuild a pull task from the row a lease returned (`LEASE_COLUMNS`), as `_restore`."""
        task = cls.__new__(cls)
        payload = row["payload"]
        options = row["retry_options"]
        task.__dict__ = {
            "_method": "PULL",
            "_name": row["name"],
            "_payload": payload if payload is None or type(payload) is bytes else bytes(payload),
            "_header_pairs": row["headers"],
            "_path": "",
            "_query": "",
            "_eta": row["eta"],
            "_tag": row["tag"],
            "_target": None,
            "_retry_options": TaskRetryOptions(**options) if options else None,
            "_dispatch_deadline_usec": None,
            "_queue_name": queue_name,
            "_retry_count": row["retry_count"],
            "_execution_count": 0,
            "_was_enqueued": True,
            "_was_deleted": False,
            "_stored_url": "",
            "_priority": 0,
            "_enqueued_at": row["enqueued_at"],
            "_row_id": row["id"],
        }
        return task

    # -- what a queue reads and records (Queue calls these; it never sets a field) ----------

    def _row_url(self, default_path: str) -> str:
        """Return the url a push task is stored with: its path, or the queue's, and its query."""
        url = self._path or default_path
        return f"{url}?{self._query}" if self._query else url

    def _mark_enqueued(self, queue_name: str, name: str, url: str) -> None:
        """Record that the task was added to `queue_name` as `name`, stored with `url`."""
        self._name = name
        self._queue_name = queue_name
        self._was_enqueued = True
        if self._method != "PULL":
            self._stored_url = url if self._path else None

    def _mark_deleted(self) -> None:
        """Record that deleting the task by name found it live."""
        self._was_deleted = True

    def _extend_lease(self, eta: datetime.datetime) -> None:
        """Record a leased task's new lease expiry (its ETA)."""
        self._eta = eta

    # -- properties, as App Engine's -------------------------------------------------------

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def payload(self) -> bytes | str | None:
        """The body: bytes, or str for a POST body built from ``params`` (as App Engine keeps it)."""
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
    def headers(self) -> CaselessDict:
        """The request headers; keys match whatever their case (`headers["content-type"]`)."""
        return self._headers.copy()

    @property
    def dispatch_deadline_usec(self) -> int | None:
        """The deadline of each attempt of this push task, or None for the worker's default."""
        return self._dispatch_deadline_usec

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
        headers = 0
        for key, value in self._headers.items():
            if isinstance(value, str):  # nearly always: no list to build
                headers += len(key) + len(value) + 4
            else:
                headers += sum(len(k) + len(v) + 4 for k, v in _header_items({key: value}))
        return len(self._method) + len(self._payload or b"") + len(self.url) + headers

    def _payload_bytes(self) -> bytes | None:
        payload = self._payload
        return payload.encode("utf-8") if isinstance(payload, str) else payload

    @property
    def tag(self) -> str | None:
        return self._tag

    @property
    def target(self) -> Any:
        return self._target

    @property
    def enqueued_at(self) -> datetime.datetime | None:
        """When the task was added, for a task read back from its queue (None otherwise)."""
        return self._enqueued_at

    @property
    def was_enqueued(self) -> bool:
        return self._was_enqueued

    @property
    def was_deleted(self) -> bool:
        return self._was_deleted

    def extract_params(self) -> dict[Any, Any]:
        """Return the task's parameters: from the payload (POST, PULL) or the url query.

        Values are bytes, as App Engine's Python 3 client returns them; keys are str, or bytes
        when read from a bytes payload. A repeated key gives a list. Raises ValueError on data
        that is not form-encoded.
        """
        query: str | bytes | None
        if self._method in ("POST", "PULL"):
            query = self._payload
        else:
            query = self.url.partition("?")[2]
        if not query:
            return {}
        result: dict[Any, Any] = {}
        pairs: list[tuple[Any, Any]]
        # parse_qsl is generic in str or bytes, so each kind is passed on its own.
        if isinstance(query, bytes):
            pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        else:
            pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        for key, value in pairs:
            result.setdefault(key, []).append(value.encode() if isinstance(value, str) else value)
        return {k: v[0] if len(v) == 1 else v for k, v in result.items()}

    def add(self, queue_name: str = DEFAULT_QUEUE, transactional: bool = False) -> Task:
        """Add this task to the queue `queue_name` and return it."""
        return self.add_async(queue_name, transactional).get_result()

    def add_async(
        self,
        queue_name: str = DEFAULT_QUEUE,
        transactional: bool = False,
        rpc: UserRPC | None = None,
    ) -> UserRPC:
        return _queue_class(queue_name).add_async(self, transactional=transactional, rpc=rpc)

    async def aadd(self, queue_name: str = DEFAULT_QUEUE, transactional: bool = False) -> Task:
        return await _queue_class(queue_name).aadd(self, transactional=transactional)

    # -- storage ---------------------------------------------------------------------------

    def _stored_headers(self) -> list[list[str]]:
        return _header_items(self._headers)

    def __repr__(self) -> str:
        return (
            f"Task<name={self._name!r} queue={self._queue_name!r} method={self._method} "
            f"eta={self._eta.isoformat()}>"
        )


#: `taskqueue.Queue`, handed over by `taskqueue` when it loads: that module imports this one, so
#: this one does not import it back. `Task.add` needs it only when called.
_queue_class: Any = None
