"""Settings of django-taskqueue: the `TASKQUEUE` setting, read through one object with defaults.

    TASKQUEUE = {
        "QUEUE_YAML": BASE_DIR / "queue.yaml",
        "DATABASE": "queue",
    }

    from django_taskqueue.conf import taskqueue_settings
    taskqueue_settings.DATABASE  # "queue"

Every key has a default in `DEFAULTS`; the user's dict is laid over it, key by key. The object
reloads when `TASKQUEUE` changes (`override_settings` included), and the queue definitions
cached by `django_taskqueue.queues` are dropped with it. An unknown key in the user's dict is not
an error here: the system check `django_taskqueue.E002` reports it. Nothing else in the package
reads `settings.TASKQUEUE`.

To add a key, add it to `DEFAULTS` with a comment, and a system check if its value can be wrong.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.crypto import salted_hmac

SETTING_NAME = "TASKQUEUE"

DEFAULTS: dict[str, Any] = {
    # Path of an App Engine queue.yaml (str or os.PathLike; relative paths are relative to the
    # working directory). None: no yaml.
    "QUEUE_YAML": None,
    # Queue definitions as a dict keyed by queue name, with queue.yaml's directives; a queue
    # named here replaces the queue.yaml queue of the same name.
    "QUEUES": {},
    # Database alias that holds the queue.
    "DATABASE": "default",
    # How long a finished or deleted task's name stays reserved (App Engine: about 9 days).
    "TOMBSTONE_SECONDS": 9 * 86400,
    # Push delivery over HTTP: target name -> base URL ("https://worker.example.com").
    "TARGETS": {},
    # Key that signs task requests and deferred payloads. None: derived from SECRET_KEY.
    "SIGNING_KEY": None,
    # How long succeeded and deleted tasks are kept as history before the sweep prunes them.
    "FINISHED_RETENTION_SECONDS": 7 * 86400,
    # How long permanently failed tasks are kept (visible and retryable from the admin).
    "FAILED_RETENTION_SECONDS": 30 * 86400,
    # Deadline of one push task attempt (App Engine's automatic scaling: 10 minutes).
    "DEFAULT_DEADLINE_SECONDS": 600,
    # How often an idle worker looks for due tasks when it is not woken up.
    "POLL_INTERVAL_SECONDS": 1.0,
    # Host header of push tasks delivered in-process. None: the first ALLOWED_HOSTS entry
    # that is not a wildcard, else "localhost".
    "DELIVERY_HOST": None,
    # App Engine's default version hostname ("my-app.example.com"): when set, a task's target
    # implies its Host header ("<target>.<hostname>"), and a Host header implies its target.
    "DEFAULT_VERSION_HOSTNAME": None,
    # How old a task request's signature may be when the handler checks it (clock skew
    # between the worker's machine and the handler's included).
    "SIGNATURE_MAX_AGE_SECONDS": 300,
    # How often the worker logs its summary line (tasks run, failed, rate).
    "SUMMARY_INTERVAL_SECONDS": 60.0,
    # How often a worker runs the rescuer sweep (push tasks whose worker died) and the pruner
    # sweep (tombstones and finished tasks past their retention).
    "RESCUE_INTERVAL_SECONDS": 5.0,
    # How often a worker announces itself (one UPDATE of its WorkerHeartbeat row, with the
    # tasks it has started), and how long without an announcement makes it dead: its RUNNING
    # tasks go back to their queue at the next rescue (within timeout + rescue interval).
    "HEARTBEAT_INTERVAL_SECONDS": 5.0,
    "WORKER_TIMEOUT_SECONDS": 20.0,
    # Times a task may be held by a worker that died (started or not) before it fails for good
    # ("worker lost N times"): a task that kills its worker cannot loop forever.
    "MAX_WORKER_LOSSES": 5,
    # How long after its deadline a claimed push task's lease lasts (time to record the
    # outcome). The lease is the last resort: a dead worker is found by its heartbeat.
    "LEASE_MARGIN_SECONDS": 30.0,
    "PRUNE_INTERVAL_SECONDS": 300.0,
    # Per-minute statistics (the admin dashboard, the metrics endpoint): how often a worker adds
    # its counts to the table (one statement per flush), and how long the rows are kept.
    "STATS_FLUSH_INTERVAL_SECONDS": 15.0,
    "STATS_RETENTION_SECONDS": 7 * 86400,
    # Bearer token that lets a scraper read the metrics endpoint (django_taskqueue.metrics)
    # without a session. None: only staff users with the view permission on queues.
    "METRICS_TOKEN": None,
    # Whether deferred tasks may be serialized with pickle (their payloads are signed).
    "ALLOW_PICKLE": True,
    # REST API (django_taskqueue.rest): DRF authentication classes, as dotted paths. Token
    # authentication lets a worker outside Django hold a token (rest_framework.authtoken).
    "REST_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # REST API: lease requests allowed per queue, as DRF writes rates ("10/s", "600/m");
    # App Engine allowed 10 per second per queue. None: no limit.
    "REST_LEASE_RATE": "10/s",
    # Path of an App Engine cron.yaml (scheduled jobs, served by the workers). None: no yaml.
    "CRON_YAML": None,
    # Cron jobs as a dict keyed by job name, with cron.yaml's directives; a job named here
    # replaces the cron.yaml job whose description is that name.
    "CRON": {},
    # Push queue that cron jobs' requests go through (its rate limits apply to them).
    "CRON_QUEUE": "default",
}

_SIGNING_SALT = "django_taskqueue.conf.signing_key"


class TaskQueueSettings:
    """The `TASKQUEUE` setting merged over `DEFAULTS`, read by attribute."""

    def __init__(self, defaults: dict[str, Any] | None = None) -> None:
        self.defaults = DEFAULTS if defaults is None else defaults
        self._merged: dict[str, Any] | None = None

    @property
    def user_settings(self) -> Any:
        """Return the `TASKQUEUE` setting as the user wrote it ({} when unset), for the checks."""
        return getattr(settings, SETTING_NAME, {})

    def _values(self) -> dict[str, Any]:
        if self._merged is None:
            user = self.user_settings
            if user is None:
                user = {}
            if not isinstance(user, dict):
                raise ImproperlyConfigured(
                    f"The {SETTING_NAME} setting must be a dict, not {type(user).__name__}."
                )
            self._merged = {**self.defaults, **user}
        return self._merged

    def __getattr__(self, name: str) -> Any:
        if name not in self.defaults:
            raise AttributeError(f"Invalid {SETTING_NAME} setting: {name!r}")
        value = self._values()[name]
        # Kept as an attribute until `reload()`: the worker reads a few settings per task.
        self.__dict__[name] = value
        return value

    def reload(self) -> None:
        """Forget the merged values; the next access reads the setting again."""
        self._merged = None
        for name in self.defaults:
            self.__dict__.pop(name, None)

    def signing_key(self) -> str:
        """Return the key that signs task requests: SIGNING_KEY, or one derived from SECRET_KEY."""
        key = self.SIGNING_KEY
        if key is not None:
            return key
        return _derive(settings.SECRET_KEY)

    def signing_fallback_keys(self) -> list[str]:
        """Return older keys still accepted when verifying, derived from SECRET_KEY_FALLBACKS.

        Empty when SIGNING_KEY is set explicitly: rotating it is then the project's business.
        """
        if self.SIGNING_KEY is not None:
            return []
        return [_derive(secret) for secret in getattr(settings, "SECRET_KEY_FALLBACKS", [])]


@lru_cache(maxsize=16)
def _derive(secret: str | bytes) -> str:
    # A salted HMAC, so a signature made for the task queue is never valid for anything else
    # that signs with SECRET_KEY (sessions, password reset tokens) and vice versa. A pure
    # function of the secret, kept: every task request is signed and verified with it.
    return salted_hmac(_SIGNING_SALT, "signing key", secret=secret, algorithm="sha256").hexdigest()


taskqueue_settings = TaskQueueSettings()


def reload_settings(*, setting: str, **kwargs: Any) -> None:
    """Reload the settings object when `TASKQUEUE` changes (`queues` drops its own cache)."""
    if setting != SETTING_NAME:
        return
    taskqueue_settings.reload()


setting_changed.connect(reload_settings)
