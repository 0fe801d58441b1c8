"""Cron job definitions: App Engine's cron.yaml and the `CRON` setting, parsed and validated.

Sources:

* `TASKQUEUE["CRON_YAML"]`: an App Engine cron.yaml, read as is: `cron:` is a list of jobs with
  `url`, `schedule`, `description`, `target`, `timezone` and `retry_parameters`
  (`job_retry_limit`, `job_age_limit`, `min_backoff_seconds`, `max_backoff_seconds`,
  `max_doublings`). `attempt_deadline` is accepted and ignored (the worker's deadline applies).
* `TASKQUEUE["CRON"]`: the same directives as a dict keyed by job name; the name is the
  job's description unless the entry sets one. An entry whose description equals a cron.yaml
  job's replaces that job whole.

One directive of our own, in either source: `skip_missed: true` makes a job skip the slots
missed while no worker ran, instead of running once for them when a worker starts.

Nothing is read at import time. `all_cron_jobs()` parses on first use and caches the result
until `TASKQUEUE` changes or the yaml file changes.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import threading
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from ..conf import SETTING_NAME, taskqueue_settings
from ..queues import (
    TARGET_RE,
    QueueConfigurationError,
    _parse_retry_parameters,
    _StringScalarLoader,
)
from ..retry import RetryParameters
from . import schedule as schedules

_JOB_DIRECTIVES = frozenset(
    {
        "url",
        "schedule",
        "description",
        "target",
        "timezone",
        "retry_parameters",
        "attempt_deadline",
        "skip_missed",
    }
)
#: cron.yaml's retry directive names -> the queue's (App Engine maps them one to one).
_RETRY_NAMES = {
    "job_retry_limit": "task_retry_limit",
    "job_age_limit": "task_age_limit",
    "min_backoff_seconds": "min_backoff_seconds",
    "max_backoff_seconds": "max_backoff_seconds",
    "max_doublings": "max_doublings",
}
_ROOT_KEYS = frozenset({"cron", "application"})
_MAX_DESCRIPTION_LENGTH = 499


class CronConfigurationError(ValueError):
    """The cron configuration (cron.yaml or the CRON setting) is malformed."""

    def __init__(self, message: str, *, job: str, position: int | None = None) -> None:
        super().__init__(f"{job}: {message}")
        self.message = message
        #: Which job: its description, or its place in the file.
        self.job = job
        #: For a bad schedule, the 0-based position of the mistake in it.
        self.position = position


@dataclass(frozen=True)
class CronJob:
    """One scheduled job."""

    url: str
    schedule_text: str
    schedule: schedules.Schedule
    description: str = ""
    target: str | None = None
    timezone: str = "UTC"
    #: None: a failed run is not retried (App Engine's default for cron).
    retry_parameters: RetryParameters | None = None
    skip_missed: bool = False

    @property
    def key(self) -> str:
        """A stable id of the job, part of its task names: a hash of what defines it."""
        text = "\n".join(
            [self.description, self.url, self.schedule_text, self.timezone, self.target or ""]
        )
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    @property
    def zone(self) -> datetime.tzinfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def name(self) -> str:
        """What people call the job: its description, else its url."""
        return self.description or self.url

    def describe(self) -> str:
        """Return the schedule in words, with its time zone when it matters."""
        words = schedules.describe(self.schedule)
        local = not isinstance(self.schedule, schedules.IntervalSchedule) or (
            self.schedule.in_local_time
        )
        return f"{words} ({self.timezone})" if local else words

    def next_run_after(self, moment: datetime.datetime) -> datetime.datetime | None:
        return schedules.next_run_after(self.schedule, moment, self.zone)

    def previous_run_at_or_before(self, moment: datetime.datetime) -> datetime.datetime | None:
        return schedules.previous_run_at_or_before(self.schedule, moment, self.zone)


# Parsing ---------------------------------------------------------------------------------------


def yaml_entries(text: str, *, source: str = "cron.yaml") -> list[tuple[str, Any]]:
    """Return a cron.yaml's job entries, unparsed, each with where it is ("cron.yaml, job 2")."""
    try:
        document = yaml.load(text, Loader=_StringScalarLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as e:
        raise CronConfigurationError(f"not valid YAML: {e}", job=source) from e
    if document is None:
        return []
    if not isinstance(document, Mapping):
        raise CronConfigurationError("the file must be a mapping with a 'cron' list", job=source)
    unknown = sorted(set(document) - _ROOT_KEYS, key=str)
    if unknown:
        raise CronConfigurationError(
            f"unknown key {', '.join(map(repr, unknown))}; expected 'cron'", job=source
        )
    entries = document.get("cron") or []
    if not isinstance(entries, list):
        raise CronConfigurationError("'cron' must be a list of jobs", job=source)
    return [(f"{source}, job {i + 1}", entry) for i, entry in enumerate(entries)]


def parse_cron_yaml(text: str, *, source: str = "cron.yaml") -> list[CronJob]:
    """Parse the text of a cron.yaml; raise `CronConfigurationError` if it is malformed."""
    return [parse_job(entry, where=where) for where, entry in yaml_entries(text, source=source)]


def setting_entries(mapping: Any) -> list[tuple[str, Any]]:
    """Return the `CRON` setting's entries, each with its name as description and its place."""
    if not isinstance(mapping, Mapping):
        raise CronConfigurationError("must be a dict keyed by job name", job="CRON")
    entries = []
    for name, entry in mapping.items():
        where = f"CRON[{name!r}]"
        if isinstance(entry, Mapping):
            entry = {"description": str(name), **entry}
        entries.append((where, entry))
    return entries


def parse_cron_definitions(mapping: Any) -> list[CronJob]:
    """Parse the `CRON` setting: job name -> directives."""
    return [parse_job(entry, where=where) for where, entry in setting_entries(mapping)]


def parse_job(entry: Any, *, where: str) -> CronJob:
    """Parse one job's directives."""
    if not isinstance(entry, Mapping):
        raise CronConfigurationError("a job must be a mapping of directives", job=where)
    description = entry.get("description")
    if description is not None:
        description = str(description)
        if len(description) > _MAX_DESCRIPTION_LENGTH:
            raise CronConfigurationError(
                f"description is longer than {_MAX_DESCRIPTION_LENGTH} characters", job=where
            )
        where = f"{where} ({description!r})"
    unknown = sorted(set(entry) - _JOB_DIRECTIVES, key=str)
    if unknown:
        raise CronConfigurationError(
            f"unknown directive {', '.join(map(repr, unknown))}; expected "
            f"{', '.join(sorted(_JOB_DIRECTIVES))}",
            job=where,
        )
    url = entry.get("url")
    if not isinstance(url, str) or not url.startswith("/"):
        raise CronConfigurationError(
            f"url must be a path starting with '/', got {url!r}", job=where
        )
    text = entry.get("schedule")
    if not isinstance(text, str) or not text.strip():
        raise CronConfigurationError("schedule is required", job=where)
    try:
        parsed = schedules.parse(text)
    except schedules.ScheduleError as e:
        raise CronConfigurationError(
            f"schedule {text!r}: {e}", job=where, position=e.position
        ) from e
    timezone = entry.get("timezone") or "UTC"
    try:
        zone = zoneinfo.ZoneInfo(str(timezone))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        raise CronConfigurationError(f"unknown timezone {timezone!r}", job=where) from e
    target = entry.get("target")
    if target is not None and not TARGET_RE.fullmatch(str(target)):
        raise CronConfigurationError(f"invalid target {target!r}", job=where)
    skip_missed = entry.get("skip_missed", False)
    if isinstance(skip_missed, str):
        if skip_missed.lower() not in ("true", "false", "yes", "no"):
            raise CronConfigurationError("skip_missed must be true or false", job=where)
        skip_missed = skip_missed.lower() in ("true", "yes")
    if (
        schedules.next_run_after(parsed, datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC), zone)
        is None
    ):
        raise CronConfigurationError(f"schedule {text!r} never runs", job=where, position=0)
    return CronJob(
        url=url,
        schedule_text=text,
        schedule=parsed,
        description=description or "",
        target=str(target) if target is not None else None,
        timezone=str(timezone),
        retry_parameters=_retry_parameters(entry.get("retry_parameters"), where),
        skip_missed=bool(skip_missed),
    )


def _retry_parameters(value: Any, where: str) -> RetryParameters | None:
    if value is None or value == "" or value == {}:
        return None
    if not isinstance(value, Mapping):
        raise CronConfigurationError("retry_parameters must be a mapping", job=where)
    unknown = sorted(set(value) - set(_RETRY_NAMES), key=str)
    if unknown:
        raise CronConfigurationError(
            f"unknown retry_parameters {', '.join(map(repr, unknown))}; expected "
            f"{', '.join(_RETRY_NAMES)}",
            job=where,
        )
    try:
        return _parse_retry_parameters(
            {_RETRY_NAMES[k]: v for k, v in value.items()}, where="retry_parameters"
        )
    except QueueConfigurationError as e:
        message = str(e).removeprefix("retry_parameters: ")
        for ours, theirs in _RETRY_NAMES.items():
            message = message.replace(theirs, ours)
        raise CronConfigurationError(message, job=where) from e


# Loading ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Loaded:
    stamp: tuple[str, int, int] | None
    jobs: tuple[CronJob, ...]


_cache: _Loaded | None = None
_lock = threading.Lock()


def clear_cache() -> None:
    """Forget the parsed jobs; the next call reads them again."""
    global _cache
    _cache = None


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    """Forget the parsed jobs when `TASKQUEUE` changes (after `conf` reloads it)."""
    if setting == SETTING_NAME:
        clear_cache()


setting_changed.connect(_settings_changed)


def _stamp(path: Any) -> tuple[str, int, int] | None:
    if path is None:
        return None
    if not isinstance(path, str | os.PathLike):
        raise ImproperlyConfigured(f"TASKQUEUE['CRON_YAML'] must be a path, got {path!r}")
    try:
        stat = os.stat(path)
    except OSError as e:
        raise ImproperlyConfigured(f"TASKQUEUE['CRON_YAML']: cannot read {path}: {e}") from e
    return os.fspath(path), stat.st_mtime_ns, stat.st_size


def load_jobs() -> list[CronJob]:
    """Read both sources and return the jobs; raise `CronConfigurationError` or `OSError`."""
    path = taskqueue_settings.CRON_YAML
    jobs: dict[str, CronJob] = {}
    if path is not None:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for i, job in enumerate(parse_cron_yaml(text, source=os.fspath(path))):
            jobs[job.description or f"\0{i}"] = job
    for job in parse_cron_definitions(taskqueue_settings.CRON or {}):
        jobs[job.description] = job
    return list(jobs.values())


def all_cron_jobs() -> list[CronJob]:
    """Return the configured jobs (cached).

    Raises `ImproperlyConfigured` when the configuration is broken (the system checks report
    the same problems, with the job and the position of the mistake).
    """
    global _cache
    stamp = _stamp(taskqueue_settings.CRON_YAML)
    cached = _cache
    if cached is not None and cached.stamp == stamp:
        return list(cached.jobs)
    with _lock:
        try:
            jobs = load_jobs()
        except OSError as e:
            raise ImproperlyConfigured(f"TASKQUEUE['CRON_YAML']: cannot read: {e}") from e
        except CronConfigurationError as e:
            raise ImproperlyConfigured(f"Invalid cron configuration: {e}") from e
        _cache = _Loaded(stamp, tuple(jobs))
        return jobs


def get_cron_job(key: str) -> CronJob | None:
    """Return the configured job whose `key` is `key`, or None."""
    return next((job for job in all_cron_jobs() if job.key == key), None)
