"""App Engine's `google.appengine.ext.deferred`: run a Python call later, as a push task.

    from django_taskqueue import deferred

    task = deferred.defer(send_invoice, invoice.pk, _countdown=60, _queue="mail")
    deferred.get_result(task.name, "mail").status   # READY, RUNNING, SUCCESSFUL or FAILED

The worker runs these tasks as direct Python calls (`dispatch.direct`), with the leases,
retries, deadlines and rate limits of every push task. `view` serves the same tasks over HTTP
for a worker that delivers them to another deployment (`_target`).

Differences from App Engine: the payload is signed (a row written without the queue's key is
never run), calls that fit JSON travel as JSON rather than pickle, pickle can be turned off
(`TASKQUEUE["ALLOW_PICKLE"]`), a payload over the push size limit stays in the task's own row,
added in the caller's transaction, and a call's return value is kept as its result.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Mapping
from inspect import isawaitable
from typing import Any

from asgiref.sync import async_to_sync
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.views.decorators.csrf import csrf_exempt

from . import callables, taskqueue
from .callables import InvalidCallableError, PayloadError
from .dispatch.direct import DEFERRED_URL, PermanentTaskFailure, SingularTaskFailure
from .results import ResultStatus, TaskError, TaskResult, aget_result, get_result

__all__ = [
    "DEFAULT_URL",
    "InvalidCallableError",
    "PermanentTaskFailure",
    "ResultStatus",
    "SingularTaskFailure",
    "TaskError",
    "TaskResult",
    "aget_result",
    "defer",
    "get_result",
    "run",
    "view",
]

logger = logging.getLogger("django_taskqueue")

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
    headers = {"Content-Type": "application/octet-stream", **(_headers or {})}
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
        # App Engine re-adds a small task pointing at a datastore entity, outside the caller's
        # transaction. Here the payload stays in the task's own row: the same insert, so it
        # commits or rolls back with the caller's transaction.
        task = taskqueue.Task(payload=payload, _size_check=False, **options)
    return task.add(_queue, transactional=_transactional)


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
