"""App Engine's `google.appengine.ext.deferred`: run a Python call later, as a push task.

    from django_taskqueue import deferred

    task = deferred.defer(send_invoice, invoice.pk, _countdown=60, _queue="mail")
    deferred.get_result(task.name, "mail").status   # READY, RUNNING, SUCCESSFUL or FAILED

The worker runs these tasks as direct Python calls (`dispatch.direct`), with the leases,
retries, deadlines and rate limits of every push task. `view` serves the same tasks over HTTP
for a worker that delivers them to another deployment (`_target`).

Differences from App Engine: the payload is signed (a row written without the queue's key is
never run), calls that fit JSON travel as JSON rather than pickle, pickle can be turned off
(`TASKQUEUE["ALLOW_PICKLE"]`), a payload over the push size limit is stored in a side table
(`DeferredPayload`) in the caller's transaction, and a call's return value is kept as its result.
"""

from __future__ import annotations

import datetime
import http
import logging
import uuid
from collections.abc import Callable, Mapping
from inspect import isawaitable
from typing import Any

from asgiref.sync import async_to_sync
from django.core.exceptions import ValidationError
from django.core.handlers.wsgi import WSGIRequest
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from . import callables, clock, taskqueue
from .callables import InvalidCallableError, PayloadError
from .conf import taskqueue_settings
from .dispatch.direct import DEFERRED_URL, Error, PermanentTaskFailure, SingularTaskFailure
from .results import ResultStatus, TaskError, TaskResult, aget_result, get_result

__all__ = [
    "DEFAULT_URL",
    "Error",
    "Handler",
    "InvalidCallableError",
    "PermanentTaskFailure",
    "ResultStatus",
    "SingularTaskFailure",
    "TaskError",
    "TaskResult",
    "aget_result",
    "application",
    "defer",
    "get_result",
    "invoke_member",
    "run",
    "run_from_datastore",
    "serialize",
    "set_log_level",
    "urlpatterns",
    "view",
]

logger = logging.getLogger("django_taskqueue")

#: The headers App Engine's `defer` gives every task; `_headers` are laid over them.
TASK_HEADERS = {"Content-Type": "application/octet-stream"}

_log_level = logging.INFO


def set_log_level(log_level: int) -> None:
    """Set the level at which a deferred task request's X-AppEngine-* headers are logged."""
    global _log_level
    _log_level = log_level


def serialize(obj: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
    """Return the payload of the call `obj(*args, **kwargs)`: what `defer` adds and `run` runs.

    Raises `InvalidCallableError` for what cannot be deferred (see `defer`).
    """
    return callables.encode_call(obj, args, kwargs)


def invoke_member(obj: Any, membername: str, *args: Any, **kwargs: Any) -> Any:
    """Call `obj.<membername>(*args, **kwargs)`: defers a method of a picklable object."""
    return getattr(obj, membername)(*args, **kwargs)


#: The url of deferred tasks, App Engine's; the worker runs them as direct calls (`handlers`).
DEFAULT_URL = DEFERRED_URL

_DEFAULT_URL = object()


def defer(
    obj: Callable[..., Any],
    *args: Any,
    _countdown: float | None = None,
    _eta: datetime.datetime | None = None,
    _name: str | None = None,
    _queue: str = taskqueue.DEFAULT_QUEUE,
    _target: str | None = None,
    _url: str | None | object = _DEFAULT_URL,
    _transactional: bool = False,
    _retry_options: taskqueue.TaskRetryOptions | None = None,
    _headers: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> taskqueue.Task:
    """Add a push task that calls `obj(*args, **kwargs)`, and return the added `Task`.

    `obj` may be a module-level function, a class, a builtin, a bound method of an instance or
    a callable instance. The underscore arguments are the task's (`_url=None` uses the queue's
    default url, whose view must then call `run`). Raises `InvalidCallableError` (a
    `taskqueue.InvalidTaskError` and a `ValueError`) for a lambda, a nested function, anything
    defined in `__main__` or a call that cannot be serialized, and the errors of
    `taskqueue.Queue.add`.
    """
    payload = callables.encode_call(obj, args, kwargs)
    headers = {**TASK_HEADERS, **(_headers or {})}
    options: dict[str, Any] = {
        "countdown": _countdown,
        "eta": _eta,
        "name": _name,
        "target": _target,
        "retry_options": _retry_options,
        "headers": headers,
    }
    if _url is not None:
        options["url"] = DEFAULT_URL if _url is _DEFAULT_URL else _url
    try:
        task = taskqueue.Task(payload=payload, **options)
    except taskqueue.TaskTooLargeError:
        return _defer_large(payload, options, _queue, _transactional)
    return task.add(_queue, transactional=_transactional)


def _defer_large(
    payload: bytes, options: dict[str, Any], queue_name: str, transactional: bool
) -> taskqueue.Task:
    # As App Engine: the call goes to a side row and the task carries a call of
    # `run_from_datastore` with its key. Unlike App Engine, the row and the task are written
    # in one transaction (the caller's, when there is one).
    from .models import DeferredPayload

    alias = taskqueue_settings.DATABASE
    key = uuid.uuid4()
    with transaction.atomic(using=alias):
        DeferredPayload.objects.using(alias).create(
            key=key, queue_name=queue_name, payload=payload, created_at=clock.now()
        )
        small = callables.encode_call(run_from_datastore, (str(key),), {})
        task = taskqueue.Task(payload=small, **options)
        task.add(queue_name, transactional=transactional)
        DeferredPayload.objects.using(alias).filter(key=key).update(task_name=task.name)
    return task


def run_from_datastore(key: str) -> Any:
    """Run the call stored under `key` by `defer` (a call over the task size limit).

    The stored call is deleted when it succeeds. Raises `PermanentTaskFailure` when it is gone.
    A failed call keeps it, so the task can be retried; it is pruned with its task.
    """
    from .models import DeferredPayload

    rows = DeferredPayload.objects.using(taskqueue_settings.DATABASE)
    try:
        stored = rows.get(key=key)
    except (DeferredPayload.DoesNotExist, ValueError, ValidationError) as e:
        raise PermanentTaskFailure(f"The deferred call {key} no longer exists") from e
    result = run(bytes(stored.payload))
    rows.filter(key=key).delete()
    return result


def prune_payloads() -> int:
    """Delete stored calls whose task no longer exists; return how many were deleted."""
    from django.db.models import Exists, OuterRef

    from .models import DeferredPayload, TaskRecord

    alias = taskqueue_settings.DATABASE
    task = TaskRecord.objects.using(alias).filter(
        queue_name=OuterRef("queue_name"), name=OuterRef("task_name")
    )
    orphans = DeferredPayload.objects.using(alias).filter(task_name__isnull=False)
    orphans = orphans.exclude(Exists(task))
    return orphans.delete()[0]


def run(payload: bytes) -> Any:
    """Run a deferred call from its payload and return what it returned.

    Raises `PermanentTaskFailure` for a payload that is not a valid signed call (it is then
    never unpickled nor imported from), and whatever the call raises.
    """
    try:
        obj, args, kwargs = callables.decode_call(payload)
    except PayloadError as e:
        raise PermanentTaskFailure(str(e)) from e
    result = obj(*args, **kwargs)
    if isawaitable(result):
        result = async_to_sync(_wait)(result)
    return result


async def _wait(awaitable: Any) -> Any:
    return await awaitable


@csrf_exempt
def _view(request: HttpRequest) -> HttpResponse:
    """Run a deferred task delivered over HTTP: App Engine's `deferred.application`."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    task_name = request.headers.get("X-AppEngine-TaskName", "")
    logger.log(
        _log_level,
        "event=deferred_request %s",
        ", ".join(
            f"{k}:{v}" for k, v in request.headers.items() if k.lower().startswith("x-appengine-")
        ),
    )
    try:
        run(request.body)
    except PermanentTaskFailure:
        # 200: App Engine does not retry a permanent failure.
        logger.exception("event=deferred_permanent_failure task=%s", task_name)
        return HttpResponse("Permanent failure", content_type="text/plain")
    except SingularTaskFailure:
        return HttpResponse("Singular failure", status=408, content_type="text/plain")
    except Exception:
        logger.exception("event=deferred_failed task=%s", task_name)
        return HttpResponse("Failed", status=500, content_type="text/plain")
    return HttpResponse("OK", content_type="text/plain")


class Handler:
    """App Engine's `deferred.Handler`: runs a deferred task from a WSGI environ.

    `post(environ)` returns `(body, http.HTTPStatus, headers)`; an instance is a WSGI
    application. Where App Engine checked the caller's IP and X-AppEngine-TaskName, this checks
    the queue's signature (`security`): anything else is answered 403.
    """

    def run_from_request(self, environ: dict[str, Any]) -> tuple[str, http.HTTPStatus, list]:
        from .security import task_request

        request = WSGIRequest(environ)
        text_headers = [("Content-Type", "text/plain")]
        if task_request(request) is None:
            logger.error("event=deferred_refused reason=not_a_signed_task_request")
            return "Not a task request", http.HTTPStatus.FORBIDDEN, text_headers
        logger.log(
            _log_level,
            ", ".join(
                f"{k[5:]}:{v}" for k, v in environ.items() if k.startswith("HTTP_X_APPENGINE_")
            ),
        )
        run(request.body)
        return "Success", http.HTTPStatus.OK, text_headers

    def post(self, environ: dict[str, Any]) -> tuple[str, http.HTTPStatus, list]:
        text_headers = [("Content-Type", "text/plain")]
        try:
            return self.run_from_request(environ)
        except SingularTaskFailure:
            return "SingularTaskFailure", http.HTTPStatus.REQUEST_TIMEOUT, text_headers
        except PermanentTaskFailure:
            # 200: App Engine does not retry a permanent failure.
            logger.exception("event=deferred_permanent_failure")
            return "PermanentTaskFailure", http.HTTPStatus.OK, text_headers

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            start_response("405 Method Not Allowed", [("Allow", "POST")])
            return [b""]
        body, status, headers = self.post(environ)
        start_response(f"{status.value} {status.phrase}", headers)
        return [body.encode()]


def _protect(view_func: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    # Only signed task requests reach the view (App Engine's `login: admin`). The payload's own
    # signature already keeps forged calls from running; this also refuses replays from outside.
    try:
        from .security import task_view
    except ImportError:  # pragma: no cover - security is part of the package
        return view_func
    return task_view(view_func)


#: The view of `/_ah/queue/deferred` for HTTP delivery:
#: ``path("_ah/queue/deferred", deferred.view)``.
view = _protect(_view)

#: App Engine's `deferred.application`, a WSGI application; Django projects route `view`.
application = Handler()

#: ``path("", include("django_taskqueue.deferred"))`` routes App Engine's url to `view`.
urlpatterns = [path(DEFAULT_URL.lstrip("/"), view, name="taskqueue-deferred")]
