"""Proof that a request comes from the queue: signed task requests, a middleware and a decorator.

Every push task request carries `X-TaskQueue-Signature`:

    v2:<task id>:<attempt>:<timestamp>:<signed header names>:<hex HMAC-SHA256>

The HMAC, keyed with `taskqueue_settings.signing_key()` (older keys of `SECRET_KEY_FALLBACKS`
still verify), covers the queue name, the task name, the task id, the attempt number, the
method, the path with its query, a SHA-256 of the body, the timestamp, and the name and value
of every header the request was sent with (`X-AppEngine-TaskRetryCount`, `-TaskExecutionCount`,
`-TaskETA`, `-TaskPreviousResponse`, `-TaskRetryReason`, `Content-Type`, the task's own
headers), except those a proxy may rewrite or drop: `Host`, `Content-Length`, the hop-by-hop
headers and names with an underscore. The names signed travel in the signature (comma-separated,
lower case), so the handler checks the same set.

A valid HMAC is not enough: a signature seen once (in a log, by a proxy) must not open the door
twice. A signed request is accepted only if

* its timestamp is less than `SIGNATURE_MAX_AGE_SECONDS` old (clock skew between machines
  included),
* the task it names is RUNNING in the queue's database with that attempt number, i.e. the
  attempt is the one a worker is making now (once it ends, the same signature is refused), and
* the signature was never accepted before: the first acceptance is written to the queue's
  database (`UsedSignature`), which every web process shares, and a second one is refused.

A captured request therefore runs at most once, and only instead of the worker's own copy of
it, identical in every signed part, while its attempt runs. An accepted request keeps only the
`X-AppEngine-*` headers its signature covers: others (a front end's, a forger's) are removed.

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

import datetime
import functools
import hashlib
import hmac
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from django.db import IntegrityError, transaction
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
_VERSION = "v2"
#: Headers left out of the signature: a proxy may rewrite or drop them on the way.
_UNSIGNED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        SIGNATURE_HEADER.lower(),
    }
)
# Underscores are left out too: WSGI cannot tell "A_B" from "A-B", and proxies drop such names.
_SIGNABLE_NAME_RE = re.compile(r"^[a-z0-9-]+$")


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
    headers: list[tuple[str, str]],
) -> bytes:
    body_hash = hashlib.sha256(body).hexdigest()
    fields = [_VERSION, queue_name, task_name, str(task_id), str(attempt), method.upper()]
    header_lines = [f"{name}:{value.strip()}" for name, value in headers]
    return "\n".join([*fields, path, body_hash, timestamp, *header_lines]).encode("utf-8")


def signed_headers(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """Return the (lower-case name, value) pairs of `headers` that a signature covers, sorted."""
    signed: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower not in _UNSIGNED_HEADERS and _SIGNABLE_NAME_RE.fullmatch(lower):
            signed[lower] = value
    return sorted(signed.items())


def _meta_key(name: str) -> str:
    upper = name.upper().replace("-", "_")
    return upper if upper in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + upper


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
    headers: Mapping[str, str] | None = None,
) -> str:
    """Return the signature header value for one attempt of a task.

    `path` is the request's full path with its query, as the handler's server receives it;
    `headers` are the headers the request is sent with (see `signed_headers` for those
    covered).
    """
    timestamp = f"{clock.now().timestamp():.6f}"
    covered = signed_headers(headers or {})
    message = _message(
        queue_name,
        task_name,
        task_id,
        attempt,
        method,
        canonical_path(path),
        body or b"",
        timestamp,
        covered,
    )
    mac = _mac(taskqueue_settings.signing_key(), message)
    names = ",".join(name for name, _ in covered)
    return f"{_VERSION}:{task_id}:{attempt}:{timestamp}:{names}:{mac}"


def verify(request: HttpRequest) -> TaskRequest | None:
    """Return the task request `request` is, or None if its signature is missing or invalid.

    Checks the HMAC (current and fallback keys), the age of the timestamp, that the attempt
    named is the one running now and that the signature was never accepted before (see the
    module docstring). A signature is accepted once: call `task_request()` for the verdict
    of a request that may already have been verified.
    """
    in_process = request.META.get(IN_PROCESS_ENVIRON_KEY)
    if isinstance(in_process, TaskRequest):
        return in_process
    value = request.META.get(_SIGNATURE_META)
    if not value:
        return None
    try:
        version, task_id_text, attempt_text, timestamp, names_text, mac = value.split(":")
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
    names = names_text.split(",") if names_text else []
    if len(set(names)) != len(names) or not all(
        _SIGNABLE_NAME_RE.fullmatch(n) and n not in _UNSIGNED_HEADERS for n in names
    ):
        return None
    covered: list[tuple[str, str]] = []
    for name in sorted(names):
        header_value = request.META.get(_meta_key(name))
        if header_value is None:
            return None
        covered.append((name, header_value))
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
        covered,
    )
    keys = [taskqueue_settings.signing_key(), *taskqueue_settings.signing_fallback_keys()]
    if not any(hmac.compare_digest(_mac(key, message), mac) for key in keys):
        return None
    if not _attempt_is_running(queue_name, task_name, task_id, attempt):
        return None
    if not _use_once(mac, signed_at, max_age):
        logger.warning(
            "event=replayed_task_request task=%s attempt=%s path=%s remote=%s",
            task_name,
            attempt,
            request.path,
            request.META.get("REMOTE_ADDR"),
        )
        return None
    # The queue and task names are fields of the message itself.
    signed_meta = {_meta_key(name) for name in names} | {
        _APPENGINE_META_PREFIX + "QUEUENAME",
        _APPENGINE_META_PREFIX + "TASKNAME",
    }
    _strip(request, [k for k in request.META if k.startswith(_APPENGINE_META_PREFIX)], signed_meta)
    return TaskRequest(queue_name, task_name, task_id, attempt)


_prune_lock = threading.Lock()
_next_prune_at = 0.0
#: How often (per process) accepted signatures too old to verify are deleted.
_PRUNE_EVERY_SECONDS = 60.0


def _use_once(mac: str, signed_at: float, max_age: float) -> bool:
    """Record the acceptance of the signature `mac`; return False if it was accepted before."""
    from .models import UsedSignature

    global _next_prune_at
    alias = taskqueue_settings.DATABASE
    signed = datetime.datetime.fromtimestamp(signed_at, tz=datetime.UTC)
    try:
        # A savepoint: inside a caller's transaction the conflict must not spoil it.
        with transaction.atomic(using=alias):
            UsedSignature.objects.using(alias).create(mac=mac, signed_at=signed)
    except IntegrityError:
        return False
    with _prune_lock:
        due = clock.monotonic() >= _next_prune_at
        if due:
            _next_prune_at = clock.monotonic() + _PRUNE_EVERY_SECONDS
    if due:
        # A signature older than max_age is refused by its timestamp alone: its row can go.
        cutoff = clock.now() - datetime.timedelta(seconds=max_age)
        UsedSignature.objects.using(alias).filter(signed_at__lt=cutoff).delete()
    return True


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
    _strip(request, [k for k in request.META if k.startswith(_APPENGINE_META_PREFIX)])
    request.META.pop(_SIGNATURE_META, None)


def _strip(
    request: HttpRequest, keys: list[str], keep: set[str] | frozenset[str] = frozenset()
) -> None:
    for key in keys:
        if key not in keep:
            del request.META[key]
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
