"""How a task request passes the handler's Django stack: a Host it accepts, and no CSRF refusal.

A plain view is a working task handler under Django's default `MIDDLEWARE`. Two of Django's
defences would otherwise refuse a task request, and each is met where code of ours can run:

* **CSRF.** A task request carries no CSRF cookie; its signature is what proves it.
  - In-process, the worker builds the request itself and marks it exempt from CSRF checks, as
    Django's test client does (`exempt_from_csrf`), whatever `MIDDLEWARE` holds.
  - Over HTTP to a project with `TaskHeaderMiddleware`, the middleware verifies the signature
    and exempts the request; it may sit anywhere in `MIDDLEWARE`, since Django runs every
    middleware's request phase before `CsrfViewMiddleware` checks the view.
  - Over HTTP to a project without it (Django's default `MIDDLEWARE`), no code of ours runs
    before `CsrfViewMiddleware`, so the worker also sends what that middleware accepts from a
    client that is not a browser (`add_csrf_pair`): a random CSRF cookie, the same value in
    the CSRF header and, over https, a Referer of the target's own origin. That grants nothing
    any HTTP client could not do for itself: CSRF protection guards a browser's ambient
    cookies, and a worker has none.
* **The Host.** An in-process request carries `DELIVERY_HOST`, or a host derived from
  `ALLOWED_HOSTS` (`delivery_host`); the system check `django_taskqueue.E040` reports a host that
  no entry accepts. Over HTTP the Host is the target URL's, which the target project must allow.
"""

from __future__ import annotations

import secrets
import string
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest
from django.http.request import split_domain_port, validate_host

from ..conf import taskqueue_settings

#: What Django accepts when DEBUG is True and ALLOWED_HOSTS is empty (HttpRequest.get_host).
_DEBUG_ALLOWED_HOSTS = [".localhost", "127.0.0.1", "[::1]"]
_CSRF_CHARS = string.ascii_letters + string.digits


def allowed_hosts() -> list[str]:
    """Return the host patterns Django's request handler accepts with the current settings."""
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        return _DEBUG_ALLOWED_HOSTS
    return allowed


def derived_host() -> str:
    """Return the Host `ALLOWED_HOSTS` suggests: its first plain name, else a subdomain pattern's.

    A pattern ".example.com" accepts "example.com" itself; "*" (or nothing) gives "localhost".
    """
    entries = [e for e in settings.ALLOWED_HOSTS if isinstance(e, str) and e]
    for entry in entries:
        if entry != "*" and not entry.startswith("."):
            return entry
    for entry in entries:
        if entry.startswith(".") and len(entry) > 1:
            return entry[1:]
    return "localhost"


def delivery_host() -> str:
    """Return the Host of in-process task requests: `DELIVERY_HOST`, else `derived_host()`."""
    return taskqueue_settings.DELIVERY_HOST or derived_host()


def host_is_allowed(host: str) -> bool:
    """Return whether Django's `request.get_host()` accepts `host` under the current settings."""
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed_hosts())


def exempt_from_csrf(request: HttpRequest) -> None:
    """Mark `request` exempt from `CsrfViewMiddleware` (Django's own flag, as its test client)."""
    request._dont_enforce_csrf_checks = True  # type: ignore[attr-defined]


def _header_name(meta_key: str) -> str:
    # settings.CSRF_HEADER_NAME is a META key ("HTTP_X_CSRFTOKEN"); a client sends "X-CSRFToken".
    name = meta_key.removeprefix("HTTP_")
    return "-".join(part.capitalize() for part in name.split("_"))


def add_csrf_pair(headers: dict[str, Any], base_url: str) -> None:
    """Add a matching CSRF cookie and header (and a same-origin Referer over https) to `headers`.

    For an HTTP target without `TaskHeaderMiddleware`; see the module docstring. A Cookie or
    Referer the task set itself is kept (the CSRF cookie is appended to its cookies).
    """
    secret = "".join(secrets.choice(_CSRF_CHARS) for _ in range(32))
    cookie = f"{settings.CSRF_COOKIE_NAME}={secret}"
    lowered = {key.lower(): key for key in headers}
    if "cookie" in lowered:
        key = lowered["cookie"]
        headers[key] = f"{headers[key]}; {cookie}"
    else:
        headers["Cookie"] = cookie
    headers[_header_name(settings.CSRF_HEADER_NAME)] = secret
    parts = urlsplit(base_url)
    if parts.scheme == "https" and "referer" not in lowered:
        headers["Referer"] = f"https://{parts.netloc}/"
