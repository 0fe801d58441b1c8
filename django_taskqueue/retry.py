"""Retry policy: App Engine's retry parameters, backoff and retry decisions, as pure functions.

Everything here follows the dev_appserver stub (`taskqueue_stub.Retry`), which is the only exact
statement of App Engine's rules:

* The parameters of a task are its own retry options if it sets *any* of them (the unset ones
  fall back to the proto defaults, not to the queue's), else its queue's `retry_parameters`,
  else the proto defaults. The choice is whole-message, never per field.
* The delay before retry `k` doubles for the first `max_doublings` retries, then grows linearly
  by `2**max_doublings * min_backoff_seconds`, and is capped at `max_backoff_seconds`.
* With both `task_retry_limit` and `task_age_limit` set, a task stops only when it has exceeded
  *both*.
* On a pull queue `task_retry_limit` is the maximum number of leases and `task_age_limit` is
  ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from typing import Any

from .exceptions import InvalidTaskRetryOptionsError

#: The proto defaults of `TaskQueueRetryParameters`.
DEFAULT_MIN_BACKOFF_SECONDS = 0.1
DEFAULT_MAX_BACKOFF_SECONDS = 3600.0
DEFAULT_MAX_DOUBLINGS = 16

#: The option names, shared by `TaskRetryOptions`, queue.yaml and `RetryParameters`.
RETRY_OPTION_NAMES = (
    "task_retry_limit",
    "task_age_limit",
    "min_backoff_seconds",
    "max_backoff_seconds",
    "max_doublings",
)

_OPTIONAL = frozenset({"task_retry_limit", "task_age_limit"})
_FLOATS = frozenset({"min_backoff_seconds", "max_backoff_seconds"})
_AGE_LIMIT_RE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def check_retry_option(name: str, value: object) -> None:
    """Check one retry option's value: a number, finite and not negative.

    The one check of a value, whoever gives it: `TaskRetryOptions`, queue.yaml (through
    `RetryParameters`) or a stored task. Raises `TypeError` for a value that is not a number
    (as App Engine's client does) and `InvalidTaskRetryOptionsError` for one out of range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    # An int is finite however large (and math.isfinite would overflow on it).
    if (isinstance(value, float) and not math.isfinite(value)) or value < 0:
        raise InvalidTaskRetryOptionsError(
            f"{name} must be a finite number, not negative, got {value!r}"
        )


def check_backoff_order(min_backoff: float | None, max_backoff: float | None) -> None:
    """Raise `InvalidTaskRetryOptionsError` when both backoff bounds are given out of order."""
    if min_backoff is not None and max_backoff is not None and min_backoff > max_backoff:
        raise InvalidTaskRetryOptionsError(
            f"min_backoff_seconds ({min_backoff}) must not be greater than "
            f"max_backoff_seconds ({max_backoff})"
        )


@dataclass(frozen=True)
class RetryParameters:
    """The five retry parameters; unset limits are None (unlimited)."""

    task_retry_limit: int | None = None
    task_age_limit: int | None = None
    min_backoff_seconds: float = DEFAULT_MIN_BACKOFF_SECONDS
    max_backoff_seconds: float = DEFAULT_MAX_BACKOFF_SECONDS
    max_doublings: int = DEFAULT_MAX_DOUBLINGS

    def __post_init__(self) -> None:
        # min > max is legal here: a task may set only min_backoff_seconds above the default
        # max, and the stub then caps every delay at max_backoff_seconds.
        for name in RETRY_OPTION_NAMES:
            value = getattr(self, name)
            if value is None and name in _OPTIONAL:
                continue
            if name not in _FLOATS and not isinstance(value, int):
                raise InvalidTaskRetryOptionsError(f"{name} must be a number, got {value!r}")
            try:
                check_retry_option(name, value)
            except TypeError as e:
                raise InvalidTaskRetryOptionsError(str(e)) from e

    def to_dict(self) -> dict[str, int | float]:
        """Return the options that differ from the defaults, as a JSON-friendly dict."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) != f.default
        }

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | None) -> RetryParameters:
        """Build parameters from a dict of options; missing or None options take the defaults.

        Raises `InvalidTaskRetryOptionsError` for an unknown key or a negative value.
        """
        options = options or {}
        unknown = sorted(set(options) - set(RETRY_OPTION_NAMES))
        if unknown:
            raise InvalidTaskRetryOptionsError(f"Unknown retry options: {', '.join(unknown)}")
        values = {name: value for name, value in options.items() if value is not None}
        age_limit = values.get("task_age_limit")
        if isinstance(age_limit, float) and math.isfinite(age_limit):
            # App Engine rounds a fractional age limit up to whole seconds.
            values["task_age_limit"] = math.ceil(age_limit)
        return cls(**values)


DEFAULT_RETRY_PARAMETERS = RetryParameters()


def effective_retry_parameters(
    task_options: Mapping[str, Any] | None,
    queue_parameters: RetryParameters | None,
) -> RetryParameters:
    """Return the parameters that govern a task: its own options wholly, else its queue's.

    `task_options` is the task's dict of retry options as given (a None value is unset).
    """
    if task_options and any(value is not None for value in task_options.values()):
        return RetryParameters.from_dict(task_options)
    if queue_parameters is not None:
        return queue_parameters
    return DEFAULT_RETRY_PARAMETERS


def can_retry(params: RetryParameters, failures: int, age_seconds: float) -> bool:
    """Return whether a push task may run again after its `failures`-th failure.

    `age_seconds` is the time since the task's first attempt (not its creation).
    """
    retry_limit = params.task_retry_limit
    age_limit = params.task_age_limit
    if retry_limit is not None and age_limit is not None:
        return retry_limit >= failures or age_limit >= age_seconds
    if retry_limit is not None:
        return retry_limit >= failures
    if age_limit is not None:
        return age_limit >= age_seconds
    return True


def backoff_seconds(params: RetryParameters, failures: int) -> float:
    """Return the delay before the retry that follows the `failures`-th failure (`failures` ≥ 1)."""
    if failures < 1:
        raise ValueError(f"failures must be at least 1, got {failures}")
    exponent = min(failures - 1, params.max_doublings)
    linear_steps = failures - exponent
    # Whole microseconds, as the stub counts them, so the delays are exact (3.2, not
    # 3.2000000000000006) and the documented tables come out as printed.
    min_usec = round(params.min_backoff_seconds * 1_000_000)
    max_usec = round(params.max_backoff_seconds * 1_000_000)
    delay_usec = min_usec
    if exponent > 0:
        # Past max_usec.bit_length() doublings the delay is over the cap whatever it is, so
        # the power stays small even with max_doublings in the thousands.
        delay_usec *= 2 ** min(exponent, max_usec.bit_length() + 1)
    if linear_steps > 1:
        delay_usec *= linear_steps
    return min(max_usec, delay_usec) / 1_000_000


def may_lease_again(params: RetryParameters, leases_so_far: int) -> bool:
    """Return whether a pull task that was leased `leases_so_far` times may be leased again.

    `task_retry_limit` is the maximum number of leases: a limit of N allows exactly N leases,
    so 0 allows none. `task_age_limit` does not apply to pull tasks.
    """
    if params.task_retry_limit is None:
        return True
    return leases_so_far < params.task_retry_limit


def parse_age_limit(text: str) -> int:
    """Parse a queue.yaml `task_age_limit` ("2d", "1.5h", "30m", "10s") into whole seconds.

    The unit is required, the value must be positive, and fractions of a second round up.
    Raises `ValueError` otherwise.
    """
    if not isinstance(text, str):
        raise ValueError(f"task_age_limit must be a string such as '2d', got {text!r}")
    match = _AGE_LIMIT_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"task_age_limit {text!r} is invalid: give a number and a unit of s, m, h or d, "
            "e.g. '2d'"
        )
    number, unit = match.groups()
    try:
        # Decimal keeps "1.1h" at exactly 3960 seconds; a float would round it up to 3961.
        seconds = Decimal(number) * _UNIT_SECONDS[unit]
    except InvalidOperation as e:  # pragma: no cover - the regex admits only decimals
        raise ValueError(f"task_age_limit {text!r} is invalid") from e
    if seconds <= 0:
        raise ValueError(f"task_age_limit {text!r} must be greater than zero")
    return math.ceil(seconds)
