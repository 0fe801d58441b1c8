"""System checks of the `TASKQUEUE` setting and the queue definitions.

Registered on import (`AppConfig.ready` imports this module). Ids are stable:

* `django_taskqueue.E001` -- `TASKQUEUE` is not a dict (the other checks then stay quiet).
* `django_taskqueue.E002` -- `TASKQUEUE` has a key that is not a known setting (a typo that
  would otherwise silently fall back to the default).
* `django_taskqueue.E003` -- `QUEUE_YAML` is not a path, or the file is missing or unreadable.
* `django_taskqueue.E004` -- the queue.yaml file is malformed (YAML or a directive).
* `django_taskqueue.E005` -- `QUEUES` is not a dict, or one of its queues is malformed.
* `django_taskqueue.E006` -- `DATABASE` is not an alias of `settings.DATABASES`.
* `django_taskqueue.E007` -- `TARGETS` is not a dict of names to http(s) base URLs.
* `django_taskqueue.W008` -- a queue's `target` is not a key of `TARGETS` (its tasks cannot be
  delivered over HTTP).
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

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.utils.module_loading import import_string

from .conf import DEFAULTS, SETTING_NAME, taskqueue_settings
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
                    f"not a key of {SETTING_NAME}['TARGETS'].",
                    hint=f"Add {queue.target!r} to TARGETS with its base URL, or remove the "
                    "queue's target to run its tasks in-process.",
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
    """Check that TARGETS maps names to http(s) base URLs (E007)."""
    if _user_settings() is None:
        return []
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
    else:
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
