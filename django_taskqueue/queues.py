"""Queue definitions: App Engine's queue.yaml and the `QUEUES` setting, parsed and validated.

Sources, and which wins:

* `TASKQUEUE["QUEUE_YAML"]`: an App Engine queue.yaml, read as is (every directive of App
  Engine's parser, `queueinfo.py`). Its scalars are read as strings, the way App Engine's parser
  reads them, so `name: 0123` is the queue "0123" and not the octal number 83.
* `TASKQUEUE["QUEUES"]`: the same directives as a dict keyed by queue name. A queue named in
  both is **replaced whole** by its `QUEUES` entry, never merged directive by directive, the way
  App Engine picks a task's retry options over its queue's: the definition that applies is
  always one place in the configuration. Queues only in the yaml are kept.
* `default` always exists, push, 5/s, bucket 5, unless a source declares it (the declaration
  wins; declaring it as a pull queue is an error).

Decisions where App Engine's parser is looser or service-specific:

* Queue names are `^[a-zA-Z0-9-]{1,100}$` (the API's rule, not the parser's 0-499).
* A push queue without `rate` gets 5/s (the stub's default, with its warning made silent).
* Pull queues may not set `rate`, `bucket_size`, `max_concurrent_requests` or `target`: they
  mean nothing for a queue nobody dispatches, so setting one is taken for a mistake.
* `acl` is accepted on push queues too: App Engine's parser accepts it there, and the REST API
  uses it for inserting into push queues (writer_email) and reading them (user_email).
* App Engine's service quotas (500/s, bucket 500, 100 queues) are not enforced: they were
  limits of Google's service, not of the queue model.
* Numbers a database column or a date cannot hold are errors: integers (`bucket_size`,
  `max_concurrent_requests`, `task_retry_limit`, `max_doublings`) and seconds (`task_age_limit`,
  the backoffs) at most `MAX_CONFIG_NUMBER` (2**31 - 1, 68 years in seconds), a finite `rate`.
* `acl` entries must be e-mail addresses (Django's `validate_email`): the REST API compares
  them with users' addresses, and anything else would never match.
* The file must be UTF-8 (YAML's encoding); another encoding is a configuration error that
  names the file, as is YAML nested too deeply to parse.
* Unknown directives are errors, as in App Engine's parser; the root keys `application` and
  `resume_paused_queues` are accepted and ignored.

Nothing is read at import time. `all_queue_configs()` parses on first use and caches the result
until `TASKQUEUE` changes or the yaml file's modification time (or size) changes. The file is
looked at (one `stat()`) at most once every `YAML_CHECK_SECONDS` per process, not on every call:
every add reads its queue's configuration, and the `stat()` was a tenth of an add's own work. An
edited queue.yaml therefore takes effect within a second.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import yaml
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.signals import setting_changed
from django.core.validators import validate_email

from . import exceptions
from .conf import SETTING_NAME, taskqueue_settings
from .limits import QUEUE_NAME_RE
from .retry import RETRY_OPTION_NAMES, RetryParameters, check_backoff_order, parse_age_limit

DEFAULT_QUEUE_NAME = "default"
DEFAULT_RATE_TEXT = "5/s"
DEFAULT_BUCKET_SIZE = 5

_RATE_RE = re.compile(r"^(?:0|([0-9]+(?:\.[0-9]*)?)/([smhd]))$")
_MODULE_RE = r"(?!-)[a-z\d\-]{1,63}"
_VERSION_RE = r"(?!-)[a-z\d\-]{1,100}"
TARGET_RE = re.compile(rf"^(?:(?:({_VERSION_RE})\.)?)({_MODULE_RE})$")
_STORAGE_LIMIT_RE = re.compile(r"^([0-9]+(?:\.[0-9]*)?)([BKMGT]?)$")

_PER_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_BYTE_SUFFIXES = "BKMGT"
_QUEUE_DIRECTIVES = frozenset(
    {
        "name",
        "mode",
        "rate",
        "bucket_size",
        "max_concurrent_requests",
        "target",
        "retry_parameters",
        "acl",
    }
)
_PUSH_ONLY_DIRECTIVES = ("rate", "bucket_size", "max_concurrent_requests", "target")
_ROOT_KEYS = frozenset({"queue", "total_storage_limit", "application", "resume_paused_queues"})
_ACL_KEYS = ("user_email", "writer_email")
#: The largest integer or number of seconds a directive takes: what every database's INTEGER
#: column holds, and 68 years as a delay.
MAX_CONFIG_NUMBER = 2**31 - 1


class QueueConfigurationError(ValueError):
    """The queue configuration (queue.yaml or the QUEUES setting) is malformed."""


@dataclass(frozen=True)
class QueueConfig:
    """The configuration of one queue."""

    name: str
    mode: str = "push"
    #: Tokens per second; 0.0 pauses a push queue; None for pull queues.
    rate: float | None = None
    #: The rate as written in the configuration, e.g. "5/s".
    rate_text: str | None = None
    bucket_size: int = DEFAULT_BUCKET_SIZE
    max_concurrent_requests: int | None = None
    #: A key of `TASKQUEUE["TARGETS"]`; overrides the task's own target.
    target: str | None = None
    #: None when the queue sets no retry parameters (tasks then use the defaults).
    retry_parameters: RetryParameters | None = None
    #: From `acl`: who may lease, read and delete (user_email) and insert (writer_email).
    user_emails: tuple[str, ...] = field(default=())
    writer_emails: tuple[str, ...] = field(default=())

    @property
    def is_pull(self) -> bool:
        return self.mode == "pull"

    @property
    def is_push(self) -> bool:
        return self.mode == "push"

    @property
    def paused_by_config(self) -> bool:
        """Whether the configuration pauses the queue (`rate: 0` on a push queue)."""
        return self.is_push and self.rate == 0


DEFAULT_QUEUE = QueueConfig(
    name=DEFAULT_QUEUE_NAME, mode="push", rate=5.0, rate_text=DEFAULT_RATE_TEXT
)


@dataclass(frozen=True)
class QueueYaml:
    """What a queue.yaml defines: its queues (by name) and its `total_storage_limit`."""

    queues: dict[str, QueueConfig]
    total_storage_limit: int | None = None


# Parsing ---------------------------------------------------------------------------------------


class _StringScalarLoader(yaml.SafeLoader):
    """A YAML loader that reads every scalar but null as a string, as App Engine's parser does."""


_StringScalarLoader.yaml_implicit_resolvers = {
    first: kept
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    if (
        kept := [
            (tag, regexp)
            for tag, regexp in resolvers
            if tag in ("tag:yaml.org,2002:null", "tag:yaml.org,2002:merge")
        ]
    )
}


def parse_queue_yaml(text: str, *, source: str = "queue.yaml") -> QueueYaml:
    """Parse the text of a queue.yaml; `source` names the file in error messages.

    Raises `QueueConfigurationError`. The `default` queue is not added.
    """
    try:
        root = yaml.load(text, Loader=_StringScalarLoader)
    except yaml.YAMLError as e:
        raise QueueConfigurationError(f"{source}: not valid YAML: {e}") from e
    except RecursionError as e:
        raise QueueConfigurationError(f"{source}: not valid YAML: nested too deeply") from e
    if root is None:
        raise QueueConfigurationError(f"{source}: empty queue configuration")
    if not isinstance(root, dict):
        raise QueueConfigurationError(f"{source}: expected a mapping with a 'queue:' list")
    unknown = sorted(set(root) - _ROOT_KEYS, key=str)
    if unknown:
        raise QueueConfigurationError(
            f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"expected {', '.join(sorted(_ROOT_KEYS))}"
        )

    limit = root.get("total_storage_limit")
    storage_limit = None if limit is None else _parse_storage_limit(limit, source)

    entries = root.get("queue") or []
    if not isinstance(entries, list):
        raise QueueConfigurationError(f"{source}: 'queue' must be a list of queues")
    queues: dict[str, QueueConfig] = {}
    for position, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise QueueConfigurationError(f"{source}: queue #{position} is not a mapping")
        name = entry.get("name")
        if name is None:
            raise QueueConfigurationError(f"{source}: queue #{position} has no name")
        where = f'{source}, queue "{name}"'
        config = _parse_queue(name, entry, where)
        if config.name in queues:
            raise QueueConfigurationError(f"{where}: the queue is defined twice")
        queues[config.name] = config
    return QueueYaml(queues=queues, total_storage_limit=storage_limit)


def parse_queue_definitions(mapping: Mapping[str, Any]) -> dict[str, QueueConfig]:
    """Parse a `QUEUES` dict: queue name -> dict of queue.yaml directives.

    Raises `QueueConfigurationError`. The `default` queue is not added.
    """
    if not isinstance(mapping, Mapping):
        raise QueueConfigurationError(
            f"QUEUES must be a dict keyed by queue name, not {type(mapping).__name__}"
        )
    queues: dict[str, QueueConfig] = {}
    for name, directives in mapping.items():
        where = f"QUEUES[{name!r}]"
        if directives is None:
            directives = {}
        if not isinstance(directives, Mapping):
            raise QueueConfigurationError(f"{where}: must be a dict of queue directives")
        if "name" in directives and directives["name"] != name:
            raise QueueConfigurationError(
                f"{where}: name {directives['name']!r} differs from the key {name!r}"
            )
        queues[name] = _parse_queue(name, {**directives, "name": name}, where)
    return queues


def _parse_queue(name: Any, entry: Mapping[str, Any], where: str) -> QueueConfig:
    if not isinstance(name, str) or not QUEUE_NAME_RE.fullmatch(name):
        raise QueueConfigurationError(
            f"{where}: name {name!r} is invalid: use 1 to 100 letters, digits and hyphens"
        )
    unknown = sorted(set(entry) - _QUEUE_DIRECTIVES, key=str)
    if unknown:
        raise QueueConfigurationError(
            f"{where}: unknown directive(s) {', '.join(map(repr, unknown))}"
        )

    mode = entry.get("mode") or "push"
    if mode not in ("push", "pull"):
        raise QueueConfigurationError(f'{where}: mode {mode!r} is invalid: use "push" or "pull"')
    user_emails, writer_emails = _parse_acl(entry.get("acl"), where)
    retry_parameters = _parse_retry_parameters(entry.get("retry_parameters"), where)

    if mode == "pull":
        for directive in _PUSH_ONLY_DIRECTIVES:
            if entry.get(directive) not in (None, ""):
                raise QueueConfigurationError(
                    f"{where}: {directive} applies to push queues only; remove it or drop "
                    "mode: pull"
                )
        return QueueConfig(
            name=name,
            mode="pull",
            retry_parameters=retry_parameters,
            user_emails=user_emails,
            writer_emails=writer_emails,
        )

    rate, rate_text = _parse_rate(entry.get("rate"), where)
    bucket_size = entry.get("bucket_size")
    max_concurrent = entry.get("max_concurrent_requests")
    return QueueConfig(
        name=name,
        mode="push",
        rate=rate,
        rate_text=rate_text,
        bucket_size=(
            DEFAULT_BUCKET_SIZE
            if bucket_size is None
            else _parse_int(bucket_size, where, "bucket_size", minimum=1)
        ),
        max_concurrent_requests=(
            None
            if max_concurrent is None
            else _parse_int(max_concurrent, where, "max_concurrent_requests", minimum=1)
        ),
        target=_parse_target(entry.get("target"), where),
        retry_parameters=retry_parameters,
        user_emails=user_emails,
        writer_emails=writer_emails,
    )


def _parse_rate(value: Any, where: str) -> tuple[float, str]:
    if value is None or value == "":
        return 5.0, DEFAULT_RATE_TEXT
    # A Python dict (or a yaml read by another tool) may say 0 for "0", which pauses.
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        value = "0"
    if not isinstance(value, str):
        raise QueueConfigurationError(
            f'{where}: rate {value!r} is invalid: write a number and a unit, e.g. "5/s"'
        )
    match = _RATE_RE.fullmatch(value.strip())
    if match is None:
        raise QueueConfigurationError(
            f'{where}: rate "{value}" is invalid: write a number per s, m, h or d '
            '(e.g. "5/s", "100/m") or "0" to pause'
        )
    number, unit = match.groups()
    if number is None:
        return 0.0, value.strip()
    rate = float(number) / _PER_UNIT[unit]
    if rate > MAX_CONFIG_NUMBER:
        raise QueueConfigurationError(
            f'{where}: rate "{value}" is invalid: at most {MAX_CONFIG_NUMBER} per second'
        )
    return rate, value.strip()


def _parse_int(value: Any, where: str, directive: str, *, minimum: int) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        number = int(value)
    if number is None:
        raise QueueConfigurationError(f"{where}: {directive} {value!r} is not an integer")
    if number < minimum:
        raise QueueConfigurationError(
            f"{where}: {directive} must be at least {minimum}, got {number}"
        )
    if number > MAX_CONFIG_NUMBER:
        raise QueueConfigurationError(
            f"{where}: {directive} must be at most {MAX_CONFIG_NUMBER}, got {number}"
        )
    return number


def _parse_float(value: Any, where: str, directive: str) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None or number != number or number in (float("inf"), float("-inf")):
        raise QueueConfigurationError(f"{where}: {directive} {value!r} is not a number")
    if number < 0:
        raise QueueConfigurationError(f"{where}: {directive} must not be negative, got {value}")
    if number > MAX_CONFIG_NUMBER:
        raise QueueConfigurationError(
            f"{where}: {directive} must be at most {MAX_CONFIG_NUMBER} seconds, got {value}"
        )
    return number


def _parse_target(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not TARGET_RE.fullmatch(value):
        raise QueueConfigurationError(
            f"{where}: target {value!r} is invalid: use a module name or version.module "
            "(lowercase letters, digits and hyphens)"
        )
    return value


def _parse_retry_parameters(value: Any, where: str) -> RetryParameters | None:
    if value is None or value == "" or value == {}:
        return None
    if not isinstance(value, Mapping):
        raise QueueConfigurationError(f"{where}: retry_parameters must be a mapping")
    unknown = sorted(set(value) - set(RETRY_OPTION_NAMES), key=str)
    if unknown:
        raise QueueConfigurationError(
            f"{where}: unknown retry_parameters {', '.join(map(repr, unknown))}; "
            f"expected {', '.join(RETRY_OPTION_NAMES)}"
        )
    options: dict[str, Any] = {}
    if value.get("task_retry_limit") is not None:
        options["task_retry_limit"] = _parse_int(
            value["task_retry_limit"], where, "retry_parameters.task_retry_limit", minimum=0
        )
    if value.get("task_age_limit") is not None:
        try:
            options["task_age_limit"] = parse_age_limit(value["task_age_limit"])
        except ValueError as e:
            raise QueueConfigurationError(f"{where}: retry_parameters.{e}") from e
        if options["task_age_limit"] > MAX_CONFIG_NUMBER:
            raise QueueConfigurationError(
                f"{where}: retry_parameters.task_age_limit must be at most "
                f"{MAX_CONFIG_NUMBER} seconds, got {value['task_age_limit']!r}"
            )
    for directive in ("min_backoff_seconds", "max_backoff_seconds"):
        if value.get(directive) is not None:
            options[directive] = _parse_float(
                value[directive], where, f"retry_parameters.{directive}"
            )
    if value.get("max_doublings") is not None:
        options["max_doublings"] = _parse_int(
            value["max_doublings"], where, "retry_parameters.max_doublings", minimum=0
        )

    # App Engine's fix-ups (queueinfo.TranslateRetryParameters): a lone bound past the other
    # bound's default drags that default along; two explicit bounds must be in order.
    min_backoff = options.get("min_backoff_seconds")
    max_backoff = options.get("max_backoff_seconds")
    defaults = RetryParameters()
    if min_backoff is not None and max_backoff is None:
        if min_backoff > defaults.max_backoff_seconds:
            options["max_backoff_seconds"] = min_backoff
    elif max_backoff is not None and min_backoff is None:
        if max_backoff < defaults.min_backoff_seconds:
            options["min_backoff_seconds"] = max_backoff
    if not options:
        return None
    try:
        check_backoff_order(min_backoff, max_backoff)
        return RetryParameters(**options)
    except exceptions.InvalidTaskRetryOptionsError as e:
        raise QueueConfigurationError(f"{where}: retry_parameters.{e}") from e


def _parse_acl(value: Any, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if value is None or value == "":
        return (), ()
    if not isinstance(value, list):
        raise QueueConfigurationError(
            f"{where}: acl must be a list of entries such as '- user_email: a@example.com'"
        )
    found: dict[str, list[str]] = {key: [] for key in _ACL_KEYS}
    for entry in value:
        # App Engine's parser allows both keys in one entry; the documented form is one each.
        if not isinstance(entry, Mapping) or not entry or set(entry) - set(_ACL_KEYS):
            raise QueueConfigurationError(
                f"{where}: acl entry {entry!r} is invalid: use '- user_email: <email>' or "
                "'- writer_email: <email>'"
            )
        for key, email in entry.items():
            if not isinstance(email, str) or not _is_email(email.strip()):
                raise QueueConfigurationError(
                    f"{where}: acl {key} {email!r} is not an e-mail address"
                )
            if email.strip() not in found[key]:
                found[key].append(email.strip())
    return tuple(found["user_email"]), tuple(found["writer_email"])


def _is_email(text: str) -> bool:
    try:
        validate_email(text)
    except ValidationError:
        return False
    return True


def _parse_storage_limit(value: Any, source: str) -> int:
    text = str(value).strip() if isinstance(value, str | int) else None
    match = _STORAGE_LIMIT_RE.fullmatch(text) if text is not None else None
    if match is None or (not match.group(2) and "." in match.group(1)):
        raise QueueConfigurationError(
            f"{source}: total_storage_limit {value!r} is invalid: write bytes, or a number with "
            "a suffix B, K, M, G or T (e.g. '1.5M')"
        )
    number, suffix = match.groups()
    factor = 1024 ** _BYTE_SUFFIXES.index(suffix) if suffix else 1
    return int(Decimal(number) * factor)


# Loading and caching ---------------------------------------------------------------------------


def load_queue_yaml(path: str | os.PathLike[str]) -> QueueYaml:
    """Read and parse the queue.yaml at `path`.

    Raises `OSError` when the file cannot be read, `QueueConfigurationError` when it is malformed.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise QueueConfigurationError(
            f"{os.fspath(path)}: not UTF-8 text (byte {e.start}: {data[e.start : e.start + 1]!r}); "
            "save the file as UTF-8"
        ) from e
    return parse_queue_yaml(text, source=os.fspath(path))


@dataclass(frozen=True)
class _Loaded:
    yaml_stamp: tuple[str, int, int] | None
    queues: dict[str, QueueConfig]
    total_storage_limit: int | None


_cache: _Loaded | None = None
#: The `QUEUE_YAML` value `_cache` was last checked against, and until when (`_monotonic()`) that
#: check stands; `clear_cache()` voids it.
_checked_path: Any = None
_checked_until = 0.0
#: How long a check of the yaml file's modification time stands, in seconds.
YAML_CHECK_SECONDS = 1.0
_monotonic = time.monotonic
# Bumped by clear_cache(), so a load that started before a settings change never stores what
# it read from the old settings.
_generation = 0
_lock = threading.Lock()


def clear_cache() -> None:
    """Forget the parsed configuration; the next call reads it again."""
    global _cache, _generation, _checked_until
    _generation += 1
    _checked_until = 0.0
    _cache = None


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    """Forget the queue definitions when `TASKQUEUE` changes (after `conf` reloads it)."""
    if setting == SETTING_NAME:
        clear_cache()


setting_changed.connect(_settings_changed)


def _yaml_stamp(path: Any) -> tuple[str, int, int] | None:
    if path is None:
        return None
    if not isinstance(path, str | os.PathLike):
        raise ImproperlyConfigured(f"TASKQUEUE['QUEUE_YAML'] must be a path, got {path!r}")
    try:
        stat = os.stat(path)
    except OSError as e:
        raise ImproperlyConfigured(f"TASKQUEUE['QUEUE_YAML']: cannot read {path}: {e}") from e
    return os.fspath(path), stat.st_mtime_ns, stat.st_size


def _load() -> _Loaded:
    global _cache, _checked_path, _checked_until
    generation = _generation
    path = taskqueue_settings.QUEUE_YAML
    cached = _cache
    if cached is not None and path is _checked_path and _monotonic() < _checked_until:
        return cached
    stamp = _yaml_stamp(path)
    if cached is not None and cached.yaml_stamp == stamp:
        if generation == _generation:
            _checked_path, _checked_until = path, _monotonic() + YAML_CHECK_SECONDS
        return cached
    with _lock:
        # Another thread may have loaded the same file while this one waited.
        cached = _cache
        if cached is not None and cached.yaml_stamp == stamp:
            return cached
        try:
            parsed = load_queue_yaml(path) if path is not None else QueueYaml(queues={})
            from_setting = parse_queue_definitions(taskqueue_settings.QUEUES)
        except OSError as e:
            raise ImproperlyConfigured(f"TASKQUEUE['QUEUE_YAML']: cannot read {path}: {e}") from e
        except QueueConfigurationError as e:
            raise ImproperlyConfigured(f"Invalid queue configuration: {e}") from e
        queues = {DEFAULT_QUEUE_NAME: DEFAULT_QUEUE, **parsed.queues, **from_setting}
        loaded = _Loaded(stamp, queues, parsed.total_storage_limit)
        if generation == _generation:
            _cache = loaded
            _checked_path, _checked_until = path, _monotonic() + YAML_CHECK_SECONDS
        return loaded


def all_queue_configs() -> dict[str, QueueConfig]:
    """Return every configured queue by name, `default` included.

    Raises `ImproperlyConfigured` when the configuration is broken (the system checks report
    the same problems at start-up).
    """
    return dict(_load().queues)


def get_queue_config(name: str) -> QueueConfig:
    """Return the configuration of the queue `name`.

    Raises `InvalidQueueNameError` for a malformed name, `UnknownQueueError` for a name that is
    not configured.
    """
    if not isinstance(name, str) or not QUEUE_NAME_RE.fullmatch(name):
        raise exceptions.InvalidQueueNameError(
            f"Invalid queue name {name!r}: use 1 to 100 letters, digits and hyphens"
        )
    try:
        return _load().queues[name]
    except KeyError:
        raise exceptions.UnknownQueueError(f"Unknown queue: {name!r}") from None


def total_storage_limit() -> int | None:
    """Return queue.yaml's `total_storage_limit` in bytes, or None when it sets none."""
    return _load().total_storage_limit
