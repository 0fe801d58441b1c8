"""Proof that a request comes from the queue: signed task requests, a middleware and a decorator.

Every push task request carries `X-TaskQueue-Signature`:

    v1:<task id>:<attempt>:<timestamp>:<hex HMAC-SHA256>

The HMAC, keyed with `taskqueue_settings.signing_key()` (older keys of `SECRET_KEY_FALLBACKS`
still verify), covers the queue name, the task name, the task id, the attempt number, the
method, the path with its query, a SHA-256 of the body and the timestamp, and a cron job's
`X-AppEngine-Cron` header when the request has one.

A valid HMAC is not enough: a signature seen once (in a log, by a proxy) must not open the door
twice. A signed request is accepted only if

* its timestamp is less than `SIGNATURE_MAX_AGE_SECONDS` old (clock skew between machines
  included), and
* the task it names is RUNNING in the queue's database with that attempt number, i.e. the
  attempt is the one a worker is making now. Once the attempt ends (success, retry, failure,
  deletion) the same signature is refused.

A request the worker runs in its own process through Django's handler never crossed a network:
the worker puts its `TaskRequest` object in the WSGI environ (`IN_PROCESS_ENVIRON_KEY`), where
no client can put one, and it is trusted without the database check.

`TaskHeaderMiddleware` strips every `X-AppEngine-*` header (and the signature) from a request
that fails these checks, so code that trusts `X-AppEngine-QueueName`, as App Engine code does,
stays safe; it exempts a signed task request from CSRF checks (`dispatch.passage` says where
each kind of delivery gets its exemption). `task_view` answers 403 to anything but a signed
task request: the equivalent of App Engine's `login: admin` on task handlers.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.utils.encoding import escape_uri_path, iri_to_uri
from django.views.decorators.csrf import csrf_exempt

from . import clock
from .conf import taskqueue_settings
from .dispatch.passage import exempt_from_csrf

logger = logging.getLogger("django_taskqueue")

#: The header that carries the signature of a task request.
SIGNATURE_HEADER = "X-TaskQueue-Signature"
_SIGNATURE_META = "HTTP_X_TASKQUEUE_SIGNATURE"
_APPENGINE_META_PREFIX = "HTTP_X_APPENGINE_"
_VERSION = "v1"

#: The header of a cron job's request (App Engine's name). The signature covers it.
CRON_HEADER = "X-AppEngine-Cron"
_CRON_META = _APPENGINE_META_PREFIX + "CRON"

#: WSGI environ key under which the worker hands an in-process attempt its `TaskRequest`.
#: Only code in the worker's own process can put an object there (a server puts strings,
#: and a client's headers become HTTP_* keys), so such a request needs no database check.
IN_PROCESS_ENVIRON_KEY = "django_taskqueue.task_request"


@dataclass(frozen=True)
class TaskRequest:
    """What a verified signature says about the request: the task and the attempt."""

    queue_name: str
    task_name: str
    task_id: int
    attempt: int


def _message(
    queue_name: str,
    task_name: str,
    task_id: int,
    attempt: int,
    method: str,
    path: str,
    body: bytes,
    timestamp: str,
    cron: str = "",
) -> bytes:
    body_hash = hashlib.sha256(body).hexdigest()
    fields = [_VERSION, queue_name, task_name, str(task_id), str(attempt), method.upper()]
    # Only when present, so the signatures of other tasks stay as they were.
    signed_headers = [f"{CRON_HEADER.lower()}:{cron}"] if cron else []
    return "\n".join([*fields, path, body_hash, timestamp, *signed_headers]).encode("utf-8")


def canonical_path(url: str) -> str:
    """Return `url` (path and query) as Django's `request.get_full_path()` rebuilds it.

    The worker signs the url it sends; the handler verifies against the path Django decoded
    and re-encoded, so both sides must spell percent-escapes the same way.
    """
    path, _, query = url.partition("?")
    full = escape_uri_path(unquote(path or "/"))
    return f"{full}?{iri_to_uri(query)}" if query else full


def _mac(key: str, message: bytes) -> str:
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(
    *,
    queue_name: str,
    task_name: str,
    task_id: int,
    attempt: int,
    method: str,
    path: str,
    body: bytes | None,
    cron: str = "",
) -> str:
    """Return the signature header value for one attempt of a task.

    `path` is the request's full path with its query, as the handler's server receives it.
    `cron` is the value of the request's `X-AppEngine-Cron` header ("" when it has none).
    """
    timestamp = f"{clock.now().timestamp():.6f}"
    message = _message(
        queue_name,
        task_name,
        task_id,
        attempt,
        method,
        canonical_path(path),
        body or b"",
        timestamp,
        cron,
    )
    mac = _mac(taskqueue_settings.signing_key(), message)
    return f"{_VERSION}:{task_id}:{attempt}:{timestamp}:{mac}"


def verify(request: HttpRequest) -> TaskRequest | None:
    """Return the task request `request` is, or None if its signature is missing or invalid.

    Checks the HMAC (current and fallback keys), the age of the timestamp and that the
    attempt named is the one running now (see the module docstring).
    """
    in_process = request.META.get(IN_PROCESS_ENVIRON_KEY)
    if isinstance(in_process, TaskRequest):
        return in_process
    value = request.META.get(_SIGNATURE_META)
    if not value:
        return None
    try:
        version, task_id_text, attempt_text, timestamp, mac = value.split(":")
        task_id, attempt = int(task_id_text), int(attempt_text)
        signed_at = float(timestamp)
    except ValueError:
        return None
    if version != _VERSION:
        return None
    age = clock.now().timestamp() - signed_at
    # A little slack the other way too: the sending machine's clock may be ahead.
    max_age = taskqueue_settings.SIGNATURE_MAX_AGE_SECONDS
    if not -max_age <= age <= max_age:
        return None
    queue_name = request.META.get(_APPENGINE_META_PREFIX + "QUEUENAME", "")
    task_name = request.META.get(_APPENGINE_META_PREFIX + "TASKNAME", "")
    message = _message(
        queue_name,
        task_name,
        task_id,
        attempt,
        request.method or "",
        request.get_full_path(),
        request.body,
        timestamp,
        request.META.get(_CRON_META, ""),
    )
    keys = [taskqueue_settings.signing_key(), *taskqueue_settings.signing_fallback_keys()]
    if not any(hmac.compare_digest(_mac(key, message), mac) for key in keys):
        return None
    if not _attempt_is_running(queue_name, task_name, task_id, attempt):
        return None
    return TaskRequest(queue_name, task_name, task_id, attempt)


def _attempt_is_running(queue_name: str, task_name: str, task_id: int, attempt: int) -> bool:
    from .models import TaskRecord, TaskState

    return (
        TaskRecord.objects.using(taskqueue_settings.DATABASE)
        .filter(
            id=task_id,
            queue_name=queue_name,
            name=task_name,
            state=TaskState.RUNNING,
            retry_count=attempt - 1,
        )
        .exists()
    )


def strip_task_headers(request: HttpRequest) -> None:
    """Remove every X-AppEngine-* header and the signature from `request`."""
    for key in [k for k in request.META if k.startswith(_APPENGINE_META_PREFIX)]:
        del request.META[key]
    request.META.pop(_SIGNATURE_META, None)
    # request.headers is built from META once; forget it if something already read it.
    request.__dict__.pop("headers", None)


def task_request(request: HttpRequest) -> TaskRequest | None:
    """Return the verified task request, verifying (once) if the middleware has not."""
    if not hasattr(request, "taskqueue_task"):
        request.taskqueue_task = verify(request)  # type: ignore[attr-defined]
        if request.taskqueue_task is None:  # type: ignore[attr-defined]
            strip_task_headers(request)
    return request.taskqueue_task  # type: ignore[attr-defined]


class TaskHeaderMiddleware:
    """Strip X-AppEngine-* headers from requests that are not signed task requests.

    Sets `request.taskqueue_task` to the `TaskRequest` of a signed task request, else None.
    Place it before any middleware or view that reads those headers.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        has_task_headers = _SIGNATURE_META in request.META or any(
            k.startswith(_APPENGINE_META_PREFIX) for k in request.META
        )
        if has_task_headers:
            task = task_request(request)
            if task is not None:
                # The signature proves the request. CsrfViewMiddleware checks views after
                # every middleware's request phase, so this holds wherever this one sits.
                exempt_from_csrf(request)
            else:
                logger.warning(
                    "event=unsigned_task_headers path=%s remote=%s",
                    request.path,
                    request.META.get("REMOTE_ADDR"),
                )
        else:
            request.taskqueue_task = None  # type: ignore[attr-defined]
        return self.get_response(request)


def task_view(view: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a view that only the queue may call: 403 for anything but a task request.

    Task requests are exempt from CSRF protection (they carry no CSRF token); the signature
    is what authenticates them.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if task_request(request) is None:
            return HttpResponseForbidden("Only the task queue may call this URL.")
        return view(request, *args, **kwargs)

    # Task requests have no user: LoginRequiredMiddleware (Django 5.1+) must let them through
    # to the signature check above (the attribute login_not_required sets).
    wrapper.login_required = False  # type: ignore[attr-defined]
    return csrf_exempt(wrapper)
