"""System checks of the `TASKQUEUE` setting, the queue definitions and the cron jobs.

Registered on import (`AppConfig.ready` imports this module). Ids are stable:

* `django_taskqueue.E001` -- `TASKQUEUE` is not a dict (the other checks then stay quiet).
* `django_taskqueue.E002` -- `TASKQUEUE` has a key that is not a known setting (a typo that
  would otherwise silently fall back to the default).
* `django_taskqueue.E003` -- `QUEUE_YAML` is not a path, or the file is missing or unreadable.
* `django_taskqueue.E004` -- the queue.yaml file is malformed (YAML or a directive).
* `django_taskqueue.E005` -- `QUEUES` is not a dict, or one of its queues is malformed.
* `django_taskqueue.E006` -- `DATABASE` is not an alias of `settings.DATABASES`.
* `django_taskqueue.E007` -- `TARGETS` is not a dict of names to http(s) base URLs.
* `django_taskqueue.W008` -- a queue's `target` is not a key of `TARGETS` (its tasks run
  in-process, as tasks whose own target is not a key of `TARGETS` do).
* `django_taskqueue.E009` -- `TOMBSTONE_SECONDS`, `FINISHED_RETENTION_SECONDS` or
  `FAILED_RETENTION_SECONDS` is not a non-negative number.
* `django_taskqueue.E010` -- `SIGNING_KEY` is neither None nor a non-empty string.
* `django_taskqueue.E011` -- `DEFAULT_DEADLINE_SECONDS` or `POLL_INTERVAL_SECONDS` is not a
  positive number.
* `django_taskqueue.E012` -- `ALLOW_PICKLE` is not a boolean.
* `django_taskqueue.E013` -- `REST_LEASE_RATE` is not None or a rate such as "10/s", or
  `REST_AUTHENTICATION_CLASSES` is not a list of importable dotted paths.
* `django_taskqueue.E014` -- a worker duration (`SIGNATURE_MAX_AGE_SECONDS`,
  `SUMMARY_INTERVAL_SECONDS`, `RESCUE_INTERVAL_SECONDS`, `PRUNE_INTERVAL_SECONDS`,
  `LEASE_MARGIN_SECONDS`) is not a number of seconds in range.
* `django_taskqueue.E015` -- `DELIVERY_HOST` is neither None nor a non-empty string.
* `django_taskqueue.W016` -- `security.TaskHeaderMiddleware` is not in `MIDDLEWARE`: forged
  `X-AppEngine-*` headers reach the views.
* `django_taskqueue.E070` -- `STATS_FLUSH_INTERVAL_SECONDS` or `STATS_RETENTION_SECONDS` is not
  a positive number of seconds (the retention at least a day, which the dashboard draws).
* `django_taskqueue.E071` -- `METRICS_TOKEN` is neither None nor a string of 16 characters or
  more.
* `django_taskqueue.E060` -- `CRON_YAML` is not a path, or the file is missing or unreadable.
* `django_taskqueue.E061` -- a cron job's schedule does not parse (the job and the position of
  the mistake are named).
* `django_taskqueue.E062` -- cron.yaml or `CRON` is malformed, or a job's other directives are.
* `django_taskqueue.E063` -- cron jobs are configured but `CRON_QUEUE` is not a push queue.
* `django_taskqueue.W064` -- a cron job's `target` is not a key of `TARGETS` (delivered
  in-process).
* `django_taskqueue.E040` -- the Host of in-process task requests (`DELIVERY_HOST`, else derived
  from `ALLOWED_HOSTS`) is one `ALLOWED_HOSTS` refuses: every in-process task would fail with
  400 (DisallowedHost).
* `django_taskqueue.W041` -- `LoginRequiredMiddleware` is in `MIDDLEWARE`: a plain view used as
  a task handler redirects task requests to the login page.
* `django_taskqueue.E042` -- the REST API is mounted and one of its authentication classes
  needs an app that is not installed (`TokenAuthentication` without
  `rest_framework.authtoken`, `SessionAuthentication` without `django.contrib.sessions`):
  requests carrying those credentials would fail with a server error.
* `django_taskqueue.W043` -- `TARGETS` is set, `CSRF_USE_SESSIONS` is on and
  `TaskHeaderMiddleware` is not in `MIDDLEWARE`: a target served with these settings refuses
  task requests over HTTP (CSRF), since only the middleware can exempt them there.
* `django_taskqueue.E030` -- `DEFAULT_VERSION_HOSTNAME` is neither None nor a host name
  (no scheme, no path).
* `django_taskqueue.E050` -- `LEASE_MARGIN_SECONDS` is under a second: a claimed task's lease
  no longer covers its deadline by the time it starts, so the worker gives every claim back
  and runs nothing.
* `django_taskqueue.E051` -- `POLL_INTERVAL_SECONDS` is under 0.01 s, or
  `RESCUE_INTERVAL_SECONDS` / `PRUNE_INTERVAL_SECONDS` under 0.1 s: the worker would query
  the database in a tight loop.
* `django_taskqueue.E052` -- a duration setting is longer than ten years: the dates computed
  from it leave what Python and the databases can store.
* `django_taskqueue.E053` -- `DEFAULT_DEADLINE_SECONDS` or `SIGNATURE_MAX_AGE_SECONDS` is under
  a second: every attempt would overrun its deadline, or every HTTP task request be refused.
* `django_taskqueue.E054` -- `HEARTBEAT_INTERVAL_SECONDS` or `WORKER_TIMEOUT_SECONDS` is not a
  number of seconds of at least 0.1, or the timeout is under twice the interval (one late
  beat would make a live worker dead).
* `django_taskqueue.E055` -- `MAX_WORKER_LOSSES` is not a whole number of 1 or more.
* `django_taskqueue.E020`, `E021` -- reported by `backends.TaskQueueBackend.check()` (through
  Django's Tasks framework): the app is not installed; a name in `TASKS[...]["QUEUES"]` is not a
  push queue.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from django.apps import AppConfig, apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.utils.module_loading import import_string

from .conf import DEFAULTS, SETTING_NAME, taskqueue_settings
from .dispatch import passage
from .queues import QueueConfig, QueueConfigurationError, load_queue_yaml, parse_queue_definitions

_ID = "django_taskqueue."


def _user_settings() -> dict[str, Any] | None:
    # None stands for "not a dict": E001 reports it and every other check stays quiet.
    user = taskqueue_settings.user_settings
    if user is None:
        return {}
    return user if isinstance(user, dict) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@register()
def check_setting_shape(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """Check that `TASKQUEUE` is a dict of known keys (E001, E002)."""
    user = taskqueue_settings.user_settings
    if user is not None and not isinstance(user, dict):
        return [
            Error(
                f"The {SETTING_NAME} setting must be a dict, not {type(user).__name__}.",
                hint=f'Write {SETTING_NAME} = {{"QUEUE_YAML": BASE_DIR / "queue.yaml", ...}}.',
                id=_ID + "E001",
            )
        ]
    unknown = sorted(set(user or {}) - set(DEFAULTS), key=str)
    return [
        Error(
            f"{SETTING_NAME} has an unknown key {key!r}.",
            hint=f"Remove it or correct its spelling; the keys are {', '.join(sorted(DEFAULTS))}.",
            id=_ID + "E002",
        )
        for key in unknown
    ]


@register()
def check_queues(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """Check QUEUE_YAML (E003, E004), QUEUES (E005) and the queues' targets (W008)."""
    user = _user_settings()
    if user is None:
        return []
    messages: list[CheckMessage] = []
    queues: dict[str, QueueConfig] = {}

    path = taskqueue_settings.QUEUE_YAML
    if path is not None:
        if not isinstance(path, str | os.PathLike):
            messages.append(
                Error(
                    f"{SETTING_NAME}['QUEUE_YAML'] must be a path, not {type(path).__name__}.",
                    hint="Give the path of your queue.yaml, e.g. BASE_DIR / 'queue.yaml', or None.",
                    id=_ID + "E003",
                )
            )
        else:
            try:
                queues.update(load_queue_yaml(path).queues)
            except OSError as e:
                messages.append(
                    Error(
                        f"{SETTING_NAME}['QUEUE_YAML'] cannot be read: {e}",
                        hint="Check the path (relative paths are relative to the working "
                        "directory; prefer BASE_DIR / 'queue.yaml') and its permissions.",
                        id=_ID + "E003",
                    )
                )
            except QueueConfigurationError as e:
                messages.append(
                    Error(
                        f"The queue.yaml is malformed: {e}",
                        hint="Correct the file; it takes App Engine's queue.yaml directives.",
                        id=_ID + "E004",
                    )
                )

    try:
        queues.update(parse_queue_definitions(taskqueue_settings.QUEUES))
    except QueueConfigurationError as e:
        messages.append(
            Error(
                f"{SETTING_NAME}['QUEUES'] is malformed: {e}",
                hint="QUEUES maps queue names to dicts of queue.yaml directives, e.g. "
                "{'mail': {'rate': '10/s', 'retry_parameters': {'task_retry_limit': 5}}}.",
                id=_ID + "E005",
            )
        )

    targets = taskqueue_settings.TARGETS
    known_targets = targets if isinstance(targets, dict) else {}
    for queue in queues.values():
        if queue.target is not None and queue.target not in known_targets:
            messages.append(
                Warning(
                    f"Queue {queue.name!r} sends its tasks to target {queue.target!r}, which is "
                    f"not a key of {SETTING_NAME}['TARGETS']: its tasks run in-process.",
                    hint=f"Add {queue.target!r} to TARGETS with its base URL to deliver them "
                    "over HTTP, or remove the queue's target.",
                    id=_ID + "W008",
                )
            )
    return messages


@register()
def check_database(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """Check that DATABASE names a configured database (E006)."""
    if _user_settings() is None:
        return []
    alias = taskqueue_settings.DATABASE
    if isinstance(alias, str) and alias in settings.DATABASES:
        return []
    return [
        Error(
            f"{SETTING_NAME}['DATABASE'] is {alias!r}, which is not a key of DATABASES.",
            hint=f"Use one of {', '.join(map(repr, settings.DATABASES))}.",
            id=_ID + "E006",
        )
    ]


def _target_url_problem(url: Any) -> str | None:
    if not isinstance(url, str):
        return f"is {type(url).__name__}, not a URL string"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises for a port out of range or not a number)
    except ValueError as e:
        return f"is not a valid URL ({e})"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "is not an http:// or https:// URL with a host"
    if parts.query or parts.fragment:
        return "has a query or fragment; give a base URL"
    return None


@register()
def check_targets(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """Check TARGETS (E007) and DEFAULT_VERSION_HOSTNAME (E030)."""
    if _user_settings() is None:
        return []
    return _check_default_version_hostname() + _check_target_urls()


def _check_default_version_hostname() -> list[CheckMessage]:
    hostname = taskqueue_settings.DEFAULT_VERSION_HOSTNAME
    if hostname is None or (
        isinstance(hostname, str) and hostname and re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", hostname)
    ):
        return []
    return [
        Error(
            f"{SETTING_NAME}['DEFAULT_VERSION_HOSTNAME'] must be None or a host name; "
            f"got {hostname!r}.",
            hint="Give the host of the default version without scheme or path, e.g. "
            "'my-app.example.com' (targets then imply Host 'backend.my-app.example.com').",
            id=_ID + "E030",
        )
    ]


def _check_target_urls() -> list[CheckMessage]:
    targets = taskqueue_settings.TARGETS
    hint = "TARGETS maps target names to base URLs, e.g. {'worker': 'https://worker.internal'}."
    if not isinstance(targets, dict):
        return [
            Error(
                f"{SETTING_NAME}['TARGETS'] must be a dict, not {type(targets).__name__}.",
                hint=hint,
                id=_ID + "E007",
            )
        ]
    messages: list[CheckMessage] = []
    for name, url in targets.items():
        problem = (
            "has a name that is not a non-empty string"
            if not isinstance(name, str) or not name
            else _target_url_problem(url)
        )
        if problem is not None:
            messages.append(
                Error(
                    f"{SETTING_NAME}['TARGETS'][{name!r}] ({url!r}) {problem}.",
                    hint=hint,
                    id=_ID + "E007",
                )
            )
    return messages


@register()
def check_values(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """Check durations, SIGNING_KEY and ALLOW_PICKLE (E009, E010, E011, E012)."""
    if _user_settings() is None:
        return []
    messages: list[CheckMessage] = []
    for key in ("TOMBSTONE_SECONDS", "FINISHED_RETENTION_SECONDS", "FAILED_RETENTION_SECONDS"):
        value = getattr(taskqueue_settings, key)
        if not _is_number(value) or value < 0:
            messages.append(
                Error(
                    f"{SETTING_NAME}[{key!r}] must be a number of seconds, 0 or more; "
                    f"got {value!r}.",
                    hint=f"Set it to e.g. {DEFAULTS[key]} ({DEFAULTS[key] // 86400} days).",
                    id=_ID + "E009",
                )
            )
    key = taskqueue_settings.SIGNING_KEY
    if key is not None and (not isinstance(key, str) or not key):
        messages.append(
            Error(
                f"{SETTING_NAME}['SIGNING_KEY'] must be a non-empty string or None.",
                hint="Leave it None to derive a key from SECRET_KEY, or give a long random "
                "string kept as secret as SECRET_KEY.",
                id=_ID + "E010",
            )
        )
    for name in ("DEFAULT_DEADLINE_SECONDS", "POLL_INTERVAL_SECONDS"):
        value = getattr(taskqueue_settings, name)
        if not _is_number(value) or value <= 0:
            messages.append(
                Error(
                    f"{SETTING_NAME}[{name!r}] must be a positive number of seconds; "
                    f"got {value!r}.",
                    hint=f"Set it to e.g. {DEFAULTS[name]}.",
                    id=_ID + "E011",
                )
            )
    if not isinstance(taskqueue_settings.ALLOW_PICKLE, bool):
        messages.append(
            Error(
                f"{SETTING_NAME}['ALLOW_PICKLE'] must be True or False.",
                hint="Set it to False to accept only JSON-serializable deferred arguments.",
                id=_ID + "E012",
            )
        )
    return messages


_REST_RATE_RE = re.compile(r"^[1-9][0-9]*/[smhd][a-z]*$")


@register()
def check_rest(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """Check the REST API's lease rate and authentication classes (E013)."""
    if _user_settings() is None:
        return []
    messages: list[CheckMessage] = []
    rate = taskqueue_settings.REST_LEASE_RATE
    if rate is not None and (not isinstance(rate, str) or not _REST_RATE_RE.fullmatch(rate)):
        messages.append(
            Error(
                f"{SETTING_NAME}['REST_LEASE_RATE'] must be None or a rate; got {rate!r}.",
                hint='Write a count per second, minute, hour or day, e.g. "10/s" or "600/m", '
                "or None for no limit.",
                id=_ID + "E013",
            )
        )
    classes = taskqueue_settings.REST_AUTHENTICATION_CLASSES
    problem = None
    if not isinstance(classes, list | tuple) or not all(isinstance(c, str) for c in classes):
        problem = "must be a list of dotted paths"
    elif _rest_api_mounted():
        # Importing the classes loads DRF; a worker of a project without the REST API
        # would carry it for nothing, so they are only imported where the API is mounted.
        for path in classes:
            try:
                import_string(path)
            except ImportError as e:
                problem = f"names {path!r}, which cannot be imported ({e})"
                break
    if problem is not None:
        messages.append(
            Error(
                f"{SETTING_NAME}['REST_AUTHENTICATION_CLASSES'] {problem}.",
                hint="List DRF authentication classes, e.g. "
                "['rest_framework.authentication.TokenAuthentication'].",
                id=_ID + "E013",
            )
        )
    return messages


@register()
def check_worker(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """Check the worker's durations and DELIVERY_HOST, and the middleware (E014, E015, W016)."""
    if _user_settings() is None:
        return []
    messages: list[CheckMessage] = []
    for name in (
        "SIGNATURE_MAX_AGE_SECONDS",
        "SUMMARY_INTERVAL_SECONDS",
        "RESCUE_INTERVAL_SECONDS",
        "PRUNE_INTERVAL_SECONDS",
        "LEASE_MARGIN_SECONDS",
    ):
        value = getattr(taskqueue_settings, name)
        zero_ok = name == "LEASE_MARGIN_SECONDS"
        if not _is_number(value) or value < 0 or (value == 0 and not zero_ok):
            messages.append(
                Error(
                    f"{SETTING_NAME}[{name!r}] must be a "
                    f"{'non-negative' if zero_ok else 'positive'} "
                    f"number of seconds; got {value!r}.",
                    hint=f"Set it to e.g. {DEFAULTS[name]}.",
                    id=_ID + "E014",
                )
            )
    host = taskqueue_settings.DELIVERY_HOST
    if host is not None and (not isinstance(host, str) or not host):
        messages.append(
            Error(
                f"{SETTING_NAME}['DELIVERY_HOST'] must be a non-empty string or None.",
                hint="Give the host name task requests carry, e.g. 'www.example.com', or None "
                "for the first entry of ALLOWED_HOSTS.",
                id=_ID + "E015",
            )
        )
    middleware = "django_taskqueue.security.TaskHeaderMiddleware"
    if middleware not in getattr(settings, "MIDDLEWARE", []):
        messages.append(
            Warning(
                f"{middleware} is not in MIDDLEWARE: a client can send X-AppEngine-* headers "
                "that views trusting them (as App Engine code does) will believe.",
                hint=f"Add {middleware!r} near the top of MIDDLEWARE.",
                id=_ID + "W016",
            )
        )
    return messages


@register()
def check_statistics(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """Check the per-minute statistics' durations and the metrics token (E070, E071)."""
    if _user_settings() is None:
        return []
    messages: list[CheckMessage] = []
    for name, least in (("STATS_FLUSH_INTERVAL_SECONDS", 0), ("STATS_RETENTION_SECONDS", 86400)):
        value = getattr(taskqueue_settings, name)
        if not _is_number(value) or value <= 0 or value < least:
            messages.append(
                Error(
                    f"{SETTING_NAME}[{name!r}] must be a positive number of seconds"
                    f"{f', {least} or more' if least else ''}; got {value!r}.",
                    hint=f"Set it to e.g. {DEFAULTS[name]}.",
                    id=_ID + "E070",
                )
            )
    token = taskqueue_settings.METRICS_TOKEN
    if token is not None and (not isinstance(token, str) or len(token) < 16):
        messages.append(
            Error(
                f"{SETTING_NAME}['METRICS_TOKEN'] must be None or a string of 16 characters "
                "or more.",
                hint="Give a long random string (python -c 'import secrets; "
                "print(secrets.token_urlsafe())'), or None to allow only staff sessions.",
                id=_ID + "E071",
            )
        )
    return messages


def _cron_error(error: Any) -> Error:
    from .cron.config import CronConfigurationError

    assert isinstance(error, CronConfigurationError)
    if error.position is not None:
        return Error(
            f"Cron job {error.job}: {error.message}",
            hint=(
                "Write the schedule in App Engine's cron format, e.g. 'every 5 minutes', "
                "'every monday 09:00', '1st,3rd monday of sep,oct,nov 17:00' "
                "(see docs/cron.md)."
            ),
            id=_ID + "E061",
        )
    return Error(
        f"Cron job {error.args[0]}",
        hint="Fix the job as cron.yaml's directives allow (see docs/cron.md).",
        id=_ID + "E062",
    )


@register()
def check_cron(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """Check CRON_YAML (E060), the jobs (E061, E062), CRON_QUEUE (E063), targets (W064)."""
    user = _user_settings()
    if user is None or (user.get("CRON_YAML") is None and not user.get("CRON")):
        return []  # no jobs: nothing to check, and no cron modules in a worker's memory
    from .cron.config import CronConfigurationError, parse_job, setting_entries, yaml_entries

    errors: list[CheckMessage] = []
    entries: list[tuple[str, Any]] = []
    path = user.get("CRON_YAML")
    if path is not None:
        if not isinstance(path, str | os.PathLike):
            errors.append(
                Error(
                    f"TASKQUEUE['CRON_YAML'] must be a path, not {type(path).__name__}.",
                    hint='Set it to the cron.yaml file, e.g. BASE_DIR / "cron.yaml".',
                    id=_ID + "E060",
                )
            )
        else:
            try:
                with open(path, encoding="utf-8") as f:
                    entries += yaml_entries(f.read(), source=os.fspath(path))
            except OSError as e:
                errors.append(
                    Error(
                        f"TASKQUEUE['CRON_YAML'] cannot be read: {e}",
                        hint="Point CRON_YAML at an existing, readable cron.yaml.",
                        id=_ID + "E060",
                    )
                )
            except CronConfigurationError as e:
                errors.append(_cron_error(e))
    try:
        entries += setting_entries(user.get("CRON", {}) or {})
    except CronConfigurationError as e:
        errors.append(_cron_error(e))
    jobs = []
    for where, entry in entries:
        try:
            jobs.append(parse_job(entry, where=where))
        except CronConfigurationError as e:
            errors.append(_cron_error(e))
    if not jobs:
        return errors
    queue_name = user.get("CRON_QUEUE", DEFAULTS["CRON_QUEUE"])
    try:
        from .queues import get_queue_config

        config = get_queue_config(queue_name)
        problem = None if config.is_push else "is a pull queue"
    except Exception as e:  # unknown or malformed name, or a broken queue configuration
        problem = f"is not a configured queue ({e})"
    if problem:
        errors.append(
            Error(
                f"TASKQUEUE['CRON_QUEUE'] {queue_name!r} {problem}; cron jobs need a push queue.",
                hint="Name a push queue of queue.yaml or QUEUES, or leave the default 'default'.",
                id=_ID + "E063",
            )
        )
    targets = user.get("TARGETS", {})
    for job in jobs:
        if job.target and isinstance(targets, dict) and job.target not in targets:
            errors.append(
                Warning(
                    f"Cron job {job.name!r} has target {job.target!r}, which is not a key of "
                    "TASKQUEUE['TARGETS']: its requests are delivered in-process.",
                    hint="Add the target to TARGETS to deliver it over HTTP, or drop it.",
                    id=_ID + "W064",
                )
            )
    return errors


@register()
def check_task_requests(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """Check that a plain view can serve task requests: Host (E040), login (W041), CSRF (W043)."""
    if _user_settings() is None:
        return []
    messages: list[CheckMessage] = []
    configured = taskqueue_settings.DELIVERY_HOST
    if configured is None or (isinstance(configured, str) and configured):
        host = passage.delivery_host()
        if not passage.host_is_allowed(host):
            source = (
                f"{SETTING_NAME}['DELIVERY_HOST']" if configured else "derived from ALLOWED_HOSTS"
            )
            messages.append(
                Error(
                    f"In-process task requests carry the Host {host!r} ({source}), which "
                    f"ALLOWED_HOSTS {list(settings.ALLOWED_HOSTS)!r} does not accept: every "
                    "task run in-process would fail with 400 (DisallowedHost).",
                    hint=f"Set {SETTING_NAME}['DELIVERY_HOST'] to a host ALLOWED_HOSTS accepts "
                    "(e.g. your site's own name), or add that host to ALLOWED_HOSTS.",
                    id=_ID + "E040",
                )
            )
    login_required = "django.contrib.auth.middleware.LoginRequiredMiddleware"
    if login_required in getattr(settings, "MIDDLEWARE", []):
        messages.append(
            Warning(
                f"{login_required} is in MIDDLEWARE: a plain view used as a task handler "
                "answers task requests (which have no user) with a redirect to the login page.",
                hint="Decorate task handlers with django_taskqueue.security.task_view (or "
                "django.contrib.auth.decorators.login_not_required).",
                id=_ID + "W041",
            )
        )
    targets = taskqueue_settings.TARGETS
    middleware = "django_taskqueue.security.TaskHeaderMiddleware"
    if (
        isinstance(targets, dict)
        and targets
        and getattr(settings, "CSRF_USE_SESSIONS", False)
        and middleware not in getattr(settings, "MIDDLEWARE", [])
    ):
        messages.append(
            Warning(
                "CSRF_USE_SESSIONS is on and TaskHeaderMiddleware is not in MIDDLEWARE: a "
                f"target of {SETTING_NAME}['TARGETS'] served with these settings refuses task "
                "requests over HTTP (their CSRF exemption needs the middleware there).",
                hint=f"Add {middleware!r} to MIDDLEWARE.",
                id=_ID + "W043",
            )
        )
    return messages


_REST_URLS = "django_taskqueue.rest.urls"


def _rest_api_mounted() -> bool:
    """Return whether the project's URLconf includes the REST API (False if it cannot load)."""
    from django.urls import URLResolver, get_resolver

    def walk(patterns: Any) -> bool:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                name = getattr(pattern.urlconf_name, "__name__", pattern.urlconf_name)
                if name == _REST_URLS or walk(pattern.url_patterns):
                    return True
        return False

    try:
        return walk(get_resolver().url_patterns)
    except Exception:  # Django's own URL checks report a URLconf that does not load
        return False


#: Authentication classes whose models or middleware live in an app: (class, app, why).
_AUTHENTICATION_APPS = (
    (
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authtoken",
        "its Token model",
    ),
    (
        "rest_framework.authentication.SessionAuthentication",
        "django.contrib.sessions",
        "sessions",
    ),
)


@register()
def check_rest_authentication(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list:
    """Check that the REST API's authentication classes have their apps (E042)."""
    if _user_settings() is None or not _rest_api_mounted():
        return []
    classes = taskqueue_settings.REST_AUTHENTICATION_CLASSES
    if not isinstance(classes, list | tuple):
        return []  # E013
    messages: list[CheckMessage] = []
    for path in classes:
        try:
            cls = import_string(path)
        except (ImportError, TypeError):
            continue  # E013
        for base_path, app, needs in _AUTHENTICATION_APPS:
            base = import_string(base_path)
            if isinstance(cls, type) and issubclass(cls, base) and not apps.is_installed(app):
                messages.append(
                    Error(
                        f"The REST API authenticates with {path}, which needs {needs}, but "
                        f"{app!r} is not in INSTALLED_APPS: requests with those credentials "
                        "would fail with a server error.",
                        hint=f"Add {app!r} to INSTALLED_APPS (then migrate), or remove {path} "
                        f"from {SETTING_NAME}['REST_AUTHENTICATION_CLASSES'].",
                        id=_ID + "E042",
                    )
                )
    return messages


#: The shortest lease margin a worker can work with (see E050).
MIN_LEASE_MARGIN_SECONDS = 1.0
#: The shortest pauses between the worker's database looks (see E051).
MIN_LOOP_SECONDS = {
    "POLL_INTERVAL_SECONDS": 0.01,
    "RESCUE_INTERVAL_SECONDS": 0.1,
    "PRUNE_INTERVAL_SECONDS": 0.1,
}
#: The longest duration setting: ten years (see E052).
MAX_DURATION_SECONDS = 10 * 365 * 86400
_DURATIONS = (
    "TOMBSTONE_SECONDS",
    "FINISHED_RETENTION_SECONDS",
    "FAILED_RETENTION_SECONDS",
    "DEFAULT_DEADLINE_SECONDS",
    "LEASE_MARGIN_SECONDS",
    "SIGNATURE_MAX_AGE_SECONDS",
    "POLL_INTERVAL_SECONDS",
    "SUMMARY_INTERVAL_SECONDS",
    "RESCUE_INTERVAL_SECONDS",
    "PRUNE_INTERVAL_SECONDS",
)


@register()
def check_workable_durations(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """Check durations that are valid numbers but cannot work (E050, E051, E052, E053).

    Values that are not numbers, or negative, are E009/E011/E014's; these checks judge only
    numbers those let through.
    """
    if _user_settings() is None:
        return []
    messages: list[CheckMessage] = []
    margin = taskqueue_settings.LEASE_MARGIN_SECONDS
    if _is_number(margin) and 0 <= margin < MIN_LEASE_MARGIN_SECONDS:
        messages.append(
            Error(
                f"{SETTING_NAME}['LEASE_MARGIN_SECONDS'] is {margin!r}: a claimed task must "
                "still have its whole deadline ahead when it starts, so a margin under "
                f"{MIN_LEASE_MARGIN_SECONDS:g} s makes the worker give back every task it "
                "claims and run none.",
                hint=f"Set it to {MIN_LEASE_MARGIN_SECONDS:g} or more; the default is "
                f"{DEFAULTS['LEASE_MARGIN_SECONDS']:g}.",
                id=_ID + "E050",
            )
        )
    for name, minimum in MIN_LOOP_SECONDS.items():
        value = getattr(taskqueue_settings, name)
        if _is_number(value) and 0 < value < minimum:
            messages.append(
                Error(
                    f"{SETTING_NAME}[{name!r}] is {value!r}: under {minimum:g} s the worker "
                    "queries the database in a tight loop.",
                    hint=f"Set it to {minimum:g} or more; the default is {DEFAULTS[name]:g}.",
                    id=_ID + "E051",
                )
            )
    for name in _DURATIONS:
        value = getattr(taskqueue_settings, name)
        if _is_number(value) and value > MAX_DURATION_SECONDS:
            messages.append(
                Error(
                    f"{SETTING_NAME}[{name!r}] is {value!r} seconds, more than ten years: "
                    "the dates computed from it cannot be stored.",
                    hint=f"Set it to at most {MAX_DURATION_SECONDS} ({MAX_DURATION_SECONDS // 86400} "
                    f"days); the default is {DEFAULTS[name]:g}.",
                    id=_ID + "E052",
                )
            )
    for name, why in (
        ("DEFAULT_DEADLINE_SECONDS", "every attempt would overrun its deadline"),
        ("SIGNATURE_MAX_AGE_SECONDS", "task requests over HTTP would arrive already expired"),
    ):
        value = getattr(taskqueue_settings, name)
        if _is_number(value) and 0 < value < 1:
            messages.append(
                Error(
                    f"{SETTING_NAME}[{name!r}] is {value!r}: under a second, {why}.",
                    hint=f"Set it to 1 or more; the default is {DEFAULTS[name]:g}.",
                    id=_ID + "E053",
                )
            )
    return messages


#: The shortest heartbeat interval and worker timeout (see E054).
MIN_HEARTBEAT_SECONDS = 0.1


@register()
def check_heartbeat(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """Check how dead workers are found (E054, E055)."""
    if _user_settings() is None:
        return []
    messages: list[CheckMessage] = []
    interval = taskqueue_settings.HEARTBEAT_INTERVAL_SECONDS
    timeout = taskqueue_settings.WORKER_TIMEOUT_SECONDS
    durations_ok = True
    for name, value in (
        ("HEARTBEAT_INTERVAL_SECONDS", interval),
        ("WORKER_TIMEOUT_SECONDS", timeout),
    ):
        if not _is_number(value) or not MIN_HEARTBEAT_SECONDS <= value <= MAX_DURATION_SECONDS:
            durations_ok = False
            messages.append(
                Error(
                    f"{SETTING_NAME}[{name!r}] must be a number of seconds from "
                    f"{MIN_HEARTBEAT_SECONDS:g} to {MAX_DURATION_SECONDS}; got {value!r}.",
                    hint=f"Set it to e.g. {DEFAULTS[name]:g}.",
                    id=_ID + "E054",
                )
            )
    if durations_ok and timeout < 2 * interval:
        messages.append(
            Error(
                f"{SETTING_NAME}['WORKER_TIMEOUT_SECONDS'] ({timeout:g}) is under twice "
                f"HEARTBEAT_INTERVAL_SECONDS ({interval:g}): one late heartbeat would make a "
                "live worker dead, and its tasks would run twice.",
                hint=f"Set it to at least {2 * interval:g} (the defaults are "
                f"{DEFAULTS['HEARTBEAT_INTERVAL_SECONDS']:g} and "
                f"{DEFAULTS['WORKER_TIMEOUT_SECONDS']:g}).",
                id=_ID + "E054",
            )
        )
    losses = taskqueue_settings.MAX_WORKER_LOSSES
    if not isinstance(losses, int) or isinstance(losses, bool) or losses < 1:
        messages.append(
            Error(
                f"{SETTING_NAME}['MAX_WORKER_LOSSES'] must be a whole number, 1 or more; "
                f"got {losses!r}.",
                hint=f"Set it to e.g. {DEFAULTS['MAX_WORKER_LOSSES']}: a task held by that many "
                "workers that died fails for good.",
                id=_ID + "E055",
            )
        )
    return messages
