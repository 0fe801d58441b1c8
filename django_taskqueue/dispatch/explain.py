"""Why an attempt failed, in words: what the worker's log line and the task's last error say.

`X-AppEngine-TaskRetryReason` and `last_retry_reason` keep App Engine's short reasons ("HTTP 404",
the exception's class); these sentences are for the people reading the log and the admin, and
name the usual causes of a handler that never ran: CSRF, a disallowed Host, a URL with no view,
a redirect (a missing trailing slash, a login page).
"""

from __future__ import annotations

from http import HTTPStatus

from . import passage

_MAX_MESSAGE = 300


def exception(error: BaseException) -> str:
    """Return "ClassName: message" for an exception raised by a handler."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 1] + "…"
    name = type(error).__qualname__
    return f"{name}: {message}" if message else name


def _status_words(status_code: int) -> str:
    try:
        return f"HTTP {status_code} {HTTPStatus(status_code).phrase}"
    except ValueError:
        return f"HTTP {status_code}"


def response(
    status_code: int,
    *,
    body: bytes,
    location: str | None,
    url: str,
    host: str | None,
) -> str | None:
    """Return why a non-2xx answer came, or None when nothing more than its status is known.

    `url` is the URL the task was sent to (its path for in-process delivery); `host` the Host
    of an in-process request, None over HTTP.
    """
    head = _status_words(status_code)
    where = "in this project's URLconf" if host is not None else "on its target"
    if status_code == 403 and b"CSRF" in body:
        return (
            f"{head} at {url}: CSRF verification failed. Task requests are exempt from CSRF "
            "in-process and wherever TaskHeaderMiddleware runs; add "
            "django_taskqueue.security.TaskHeaderMiddleware to the handler's MIDDLEWARE."
        )
    if status_code == 400 and host is not None and not passage.host_is_allowed(host):
        return (
            f"{head}: the task request's Host {host!r} is not accepted by ALLOWED_HOSTS "
            "(DisallowedHost). Set TASKQUEUE['DELIVERY_HOST'] to a host ALLOWED_HOSTS accepts."
        )
    if status_code == 400 and host is None and b"Bad Request (400)" in body:
        return (
            f"{head} from {url}: Django's own answer to a request it refuses before any view, "
            "most often a Host its ALLOWED_HOSTS does not accept (DisallowedHost); add the "
            "target URL's host to the target's ALLOWED_HOSTS."
        )
    if status_code == 404:
        return f"{head}: no view answers {url} {where}; check the task's url."
    if 300 <= status_code < 400:
        target = location or "?"
        hint = ""
        if location and location.rstrip("/") == url.partition("?")[0].rstrip("/"):
            hint = " (a missing trailing slash: APPEND_SLASH)"
        elif location and "login" in location:
            hint = (
                " (a login page: decorate the handler with "
                "django_taskqueue.security.task_view, or make it reachable without a login)"
            )
        return f"{head}: {url} redirects to {target}{hint}; task handlers must answer 2xx."
    if status_code == 405:
        return f"{head}: the view at {url} does not accept the task's method."
    if status_code == 403:
        return f"{head}: the view at {url} refused the request."
    return None
