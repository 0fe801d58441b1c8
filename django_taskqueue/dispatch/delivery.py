"""Delivery of one push task attempt: in-process through Django's handler, over HTTP, or a direct call.

* A task whose target (the queue's `target`, else the task's) names an entry of
  `TASKQUEUE["TARGETS"]` is sent over HTTP to that base URL, through one pooled `httpx.Client`
  per worker.
* Otherwise, a task whose url path has a registered direct handler (`dispatch.direct`, e.g.
  the deferred library's `/_ah/queue/deferred`) is run as a Python call.
* Otherwise the task runs in-process: a WSGI request of its method, url, headers and body goes
  through Django's full request handler (URL resolver, middleware, view), with no web server.
  The request comes from `REMOTE_ADDR` 0.1.0.2, App Engine's address for task requests, with
  a Host that `ALLOWED_HOSTS` accepts and exempt from CSRF checks (`passage`).

The deadline (`DEFAULT_DEADLINE_SECONDS`) is the HTTP client's timeout for HTTP delivery. A
thread cannot interrupt a view or a Python call, so an in-process attempt or a direct call that
overruns its deadline is let finish and then counted as failed ("deadline exceeded"), whatever
it answered; a worker that dies meanwhile is covered by the claim's lease, which expires a
margin after the deadline.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import logging
import sys
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes, urlsplit

from django.conf import settings
from django.core import signals
from django.core.handlers.base import BaseHandler
from django.core.handlers.wsgi import WSGIRequest
from django.db import close_old_connections, connections
from django.http import HttpResponse
from django.urls import set_script_prefix

from .. import clock, security
from ..conf import taskqueue_settings
from ..db.rows import ClaimedTask
from . import direct, explain, passage
from .passage import delivery_host

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger("django_taskqueue")

#: App Engine's source address of task requests.
TASK_REMOTE_ADDR = "0.1.0.2"


@dataclass
class Outcome:
    """The result of one attempt."""

    succeeded: bool
    status_code: int | None = None
    #: False when the task must not be retried whatever its retry policy says.
    may_retry: bool = True
    #: Why the attempt failed, sent as X-AppEngine-TaskRetryReason on the retry.
    reason: str | None = None
    #: Why, in words, for the log and the task's last error (`explain`); None: `reason` says it.
    detail: str | None = None
    error: BaseException | None = None
    #: Traceback text, recorded in the task's `errors`; None for failures not worth one.
    traceback: str | None = None
    return_value: Any = None
    #: False when the request never reached a handler (connection refused): the attempt
    #: counts toward X-AppEngine-TaskRetryCount but not -TaskExecutionCount.
    reached_handler: bool = True
    #: False for a failure retried without an error report (SingularTaskFailure).
    reports_error: bool = True
    duration: float = 0.0


def eta_header(eta: datetime.datetime) -> str:
    """Return an ETA as App Engine sends it: seconds since the epoch, with a fraction."""
    return f"{eta.timestamp():.6f}"


_QUEUE_SET_HEADERS = frozenset(
    name.lower()
    for name in (
        "X-AppEngine-QueueName",
        "X-AppEngine-TaskName",
        "X-AppEngine-TaskRetryCount",
        "X-AppEngine-TaskExecutionCount",
        "X-AppEngine-TaskETA",
        "X-AppEngine-TaskPreviousResponse",
        "X-AppEngine-TaskRetryReason",
        security.SIGNATURE_HEADER,
    )
)


def task_headers(task: ClaimedTask, path_prefix: str = "") -> dict[str, str]:
    """Return the headers of an attempt: the task's own, App Engine's and the signature.

    `path_prefix` is the path of an HTTP target's base URL, part of the path the handler's
    server sees, hence of what is signed.
    """
    headers: dict[str, str] = {}
    for key, value in task.headers:
        # The caller's X-AppEngine-* directives pass; the headers the queue sets do not.
        if key.lower() in _QUEUE_SET_HEADERS:
            continue
        # One header per name whatever its case: two spellings would reach the handler
        # joined into one value, which is not what was signed.
        for existing in [k for k in headers if k.lower() == key.lower()]:
            del headers[existing]
        headers[key] = value
    if task.payload is not None and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/octet-stream"
    headers["X-AppEngine-QueueName"] = task.queue_name
    headers["X-AppEngine-TaskName"] = task.name
    headers["X-AppEngine-TaskRetryCount"] = str(task.retry_count)
    headers["X-AppEngine-TaskExecutionCount"] = str(task.execution_count)
    headers["X-AppEngine-TaskETA"] = eta_header(task.eta)
    if task.retry_count:
        if task.last_response_code is not None:
            headers["X-AppEngine-TaskPreviousResponse"] = str(task.last_response_code)
        if task.last_retry_reason:
            headers["X-AppEngine-TaskRetryReason"] = task.last_retry_reason
    headers[security.SIGNATURE_HEADER] = security.sign(
        queue_name=task.queue_name,
        task_name=task.name,
        task_id=task.id,
        attempt=task.attempt,
        method=task.method,
        path=path_prefix + task.url,
        body=task.payload,
        headers=headers,
    )
    return headers


class _InProcessHandler(BaseHandler):
    """Django's request handler without a server: middleware loaded once, called per task."""

    def __init__(self) -> None:
        super().__init__()
        self.load_middleware()


_exceptions = threading.local()


def _remember_exception(sender: Any, request: Any = None, **kwargs: Any) -> None:
    # Django turns a view's exception into a 500 response; keep the exception itself so the
    # attempt's error records its traceback.
    if getattr(_exceptions, "active", False):
        _exceptions.info = sys.exc_info()


signals.got_request_exception.connect(_remember_exception, dispatch_uid="django_taskqueue.delivery")


_owned_lock = threading.Lock()
_owned_depth = 0


@contextlib.contextmanager
def keep_connections() -> Iterator[None]:
    """While held, requests do not close Django's database connections when they end.

    Django closes a request's connections at its start and end when CONN_MAX_AGE says so (0
    by default: after every request), through `close_old_connections` receivers of
    `request_started` and `request_finished`. Those receivers are disconnected while anyone
    holds this (a worker's run, each in-process attempt) and connected again when the last
    holder lets go. A worker holds it for its whole run, so its attempts do not disconnect
    and reconnect them each time: that took Django's signal lock four times per attempt and
    emptied the signals' receiver caches, which each request then rebuilt.
    """
    global _owned_depth
    with _owned_lock:
        if _owned_depth == 0:
            signals.request_started.disconnect(close_old_connections)
            signals.request_finished.disconnect(close_old_connections)
        _owned_depth += 1
    try:
        yield
    finally:
        with _owned_lock:
            _owned_depth -= 1
            if _owned_depth == 0:
                # weak=False: a weak connect leaves a `weakref.finalize` hook that disconnect()
                # never frees, about a kilobyte per cycle over a process's life.
                signals.request_started.connect(close_old_connections, weak=False)
                signals.request_finished.connect(close_old_connections, weak=False)


@contextlib.contextmanager
def _worker_owned_connections() -> Iterator[None]:
    """Run a request without Django's end-of-request connection closing; tidy up after.

    A web server closes each request's database connections when CONN_MAX_AGE says so (0 by
    default: after every request). In the worker the request is one attempt among thousands
    on the worker's own connection: closing it would reopen a connection per task. So the
    worker keeps its connections across attempts (`keep_connections`), closing only one that
    a handler left unusable or in a broken transaction state. A caller inside a transaction
    (a test calling `run_tasks()`) keeps its connection untouched, as with Django's test
    client.
    """
    try:
        with keep_connections():
            yield
    finally:
        for connection in connections.all(initialized_only=True):
            if connection.connection is None or connection.in_atomic_block:
                continue
            if connection.get_autocommit() != connection.settings_dict["AUTOCOMMIT"]:
                connection.close()
            elif connection.errors_occurred:
                if connection.is_usable():
                    connection.errors_occurred = False
                else:
                    connection.close()


class Deliverer:
    """Runs attempts; one per worker, shared by its threads."""

    def __init__(self, deadline_seconds: float | None = None, max_connections: int = 10) -> None:
        self.deadline_seconds = float(
            deadline_seconds or taskqueue_settings.DEFAULT_DEADLINE_SECONDS
        )
        self.max_connections = max_connections
        self._handler: _InProcessHandler | None = None
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    # -- resources ------------------------------------------------------------------------

    @property
    def handler(self) -> _InProcessHandler:
        with self._lock:
            if self._handler is None:
                self._handler = _InProcessHandler()
            return self._handler

    @property
    def client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                import httpx  # only for a remote target: a worker saves its 10 MB otherwise

                self._client = httpx.Client(
                    timeout=self.deadline_seconds,
                    limits=httpx.Limits(max_connections=self.max_connections),
                    follow_redirects=False,
                )
            return self._client

    def warm_up(self) -> None:
        """Load the middleware and the URLconf now, so the first attempt is not slowed."""
        from django.urls import get_resolver

        self.handler  # noqa: B018
        get_resolver().url_patterns  # noqa: B018

    def close(self) -> None:
        """Close the HTTP connection pool."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- attempts -------------------------------------------------------------------------

    def deliver(self, task: ClaimedTask, target: str | None) -> Outcome:
        """Run one attempt of `task` and return its outcome; never raises."""
        started = clock.monotonic()
        base_url = taskqueue_settings.TARGETS.get(target) if target else None
        try:
            if base_url:
                outcome = self._deliver_http(task, base_url)
            elif (handler := direct.resolve(task.url)) is not None:
                outcome = self._call_direct(task, handler)
            else:
                outcome = self._deliver_in_process(task)
        except Exception as e:  # a bug of ours, not the task's: still a failed attempt
            outcome = _failure_from_exception(e, status_code=None)
        outcome.duration = clock.monotonic() - started
        deadline = task.deadline_seconds(self.deadline_seconds)
        if outcome.succeeded and not base_url and outcome.duration > deadline:
            logger.warning(
                "event=deadline_overrun queue=%s task=%s deadline=%.3f duration=%.3f",
                task.queue_name,
                task.name,
                deadline,
                outcome.duration,
            )
            outcome.succeeded = False
            outcome.reason = "deadline exceeded"
        return outcome

    def _deliver_http(self, task: ClaimedTask, base_url: str) -> Outcome:
        base = base_url.rstrip("/")
        headers = task_headers(task, path_prefix=urlsplit(base).path)
        passage.add_csrf_pair(headers, base)
        import httpx

        try:
            response = self.client.request(
                task.method,
                base + task.url,
                headers=headers,
                content=task.payload,
                timeout=task.deadline_seconds(self.deadline_seconds),
            )
        except httpx.TimeoutException as e:
            return Outcome(False, reason="deadline exceeded", error=e)
        except httpx.TransportError as e:
            # Refused, reset, DNS: the handler never ran.
            return Outcome(False, reason=f"connection error: {e}", error=e, reached_handler=False)
        outcome = _from_status(response.status_code)
        if not outcome.succeeded:
            outcome.detail = explain.response(
                response.status_code,
                body=response.content[:4096],
                location=response.headers.get("location"),
                url=base + task.url,
                host=None,
            )
        return outcome

    def _call_direct(self, task: ClaimedTask, handler: direct.DirectHandler) -> Outcome:
        call = direct.DirectCall(
            queue_name=task.queue_name,
            task_name=task.name,
            task_id=task.id,
            url=task.url,
            payload=task.payload,
            headers=direct.LazyHeaders(lambda: task_headers(task)),
            retry_count=task.retry_count,
            execution_count=task.execution_count,
            eta=task.eta,
            priority=task.priority,
            enqueued_at=task.enqueued_at,
            first_attempt_at=task.first_attempt_at,
            leased_at=task.leased_at,
            worker_id=task.worker_id,
            errors=task.errors,
        )
        try:
            value = handler(call)
        except direct.PermanentTaskFailure as e:
            outcome = _failure_from_exception(e, status_code=None)
            outcome.may_retry = False
            return outcome
        except direct.SingularTaskFailure as e:
            # App Engine answers 408 here: a retry, no error report.
            return Outcome(
                False, status_code=408, reason="singular failure", error=e, reports_error=False
            )
        except Exception as e:
            return _failure_from_exception(e, status_code=None)
        try:
            if value is not None:
                json.dumps(value)
        except (TypeError, ValueError):
            logger.warning(
                "event=return_value_not_json queue=%s task=%s type=%s",
                task.queue_name,
                task.name,
                type(value).__name__,
            )
            value = None
        return Outcome(True, return_value=value)

    def _deliver_in_process(self, task: ClaimedTask) -> Outcome:
        environ = self._environ(task)
        _exceptions.active, _exceptions.info = True, None
        try:
            with _worker_owned_connections():
                set_script_prefix("/")
                signals.request_started.send(sender=self.__class__, environ=environ)
                request = WSGIRequest(environ)
                passage.exempt_from_csrf(request)
                response = self.handler.get_response(request)
                if response.streaming:
                    for _ in response:
                        pass
                response.close()
            exc_info = _exceptions.info
        finally:
            _exceptions.active, _exceptions.info = False, None
        if exc_info is not None and exc_info[1] is not None:
            return _failure_from_exception(exc_info[1], status_code=response.status_code)
        outcome = _from_status(response.status_code)
        if not outcome.succeeded:
            outcome.detail = explain.response(
                response.status_code,
                body=response.content[:4096] if isinstance(response, HttpResponse) else b"",
                location=response.get("Location"),
                url=task.url,
                host=environ["HTTP_HOST"],
            )
        return outcome

    def _environ(self, task: ClaimedTask) -> dict[str, Any]:
        path, _, query = task.url.partition("?")
        body = task.payload or b""
        host = delivery_host()
        secure = bool(getattr(settings, "SECURE_SSL_REDIRECT", False))
        environ: dict[str, Any] = {
            "REQUEST_METHOD": task.method,
            "SCRIPT_NAME": "",
            # WSGI: the decoded path, its bytes carried as latin-1 characters.
            "PATH_INFO": unquote_to_bytes(path or "/").decode("iso-8859-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": host.partition(":")[0],
            "SERVER_PORT": "443" if secure else "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": TASK_REMOTE_ADDR,
            "HTTP_HOST": host,
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if secure else "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            # Proof of origin no client can forge, sparing the handler's middleware a query.
            security.IN_PROCESS_ENVIRON_KEY: security.TaskRequest(
                task.queue_name, task.name, task.id, task.attempt
            ),
        }
        for key, value in task_headers(task).items():
            name = key.upper().replace("-", "_")
            if name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                environ[name] = value
            elif name == "HOST":
                # The task's own Host header, if it set one, wins over DELIVERY_HOST.
                environ["HTTP_HOST"] = value
                environ["SERVER_NAME"] = value.partition(":")[0]
            else:
                environ["HTTP_" + name] = value
        return environ


def _from_status(status_code: int) -> Outcome:
    if 200 <= status_code < 300:
        return Outcome(True, status_code=status_code)
    return Outcome(False, status_code=status_code, reason=f"HTTP {status_code}")


def _failure_from_exception(error: BaseException, status_code: int | None) -> Outcome:
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return Outcome(
        False,
        status_code=status_code,
        reason=f"{type(error).__module__}.{type(error).__qualname__}",
        detail=explain.exception(error),
        error=error,
        traceback=text,
    )
