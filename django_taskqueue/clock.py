"""The one reader of wall-clock time, so tests can freeze it."""

from __future__ import annotations

import datetime
import time

_frozen: datetime.datetime | None = None
_frozen_monotonic: float | None = None


def now() -> datetime.datetime:
    """Return the current time as an aware UTC datetime."""
    if _frozen is not None:
        return _frozen
    return datetime.datetime.now(datetime.UTC)


def monotonic() -> float:
    """Return a monotonic clock reading in seconds (intervals, never stored)."""
    if _frozen_monotonic is not None:
        return _frozen_monotonic
    return time.monotonic()


def freeze(at: datetime.datetime | None) -> None:
    """Freeze `now()` at `at` (aware), or unfreeze with None. For tests."""
    global _frozen
    if at is not None and at.tzinfo is None:
        raise ValueError("freeze() takes an aware datetime")
    _frozen = at.astimezone(datetime.UTC) if at is not None else None


def freeze_monotonic(frozen: bool) -> None:
    """Freeze `monotonic()` at its current reading (True), or let it run again. For tests.

    While frozen, `advance()` moves it too, so intervals measured on it (the worker's success
    batching, sweep intervals) pass without waiting.
    """
    global _frozen_monotonic
    _frozen_monotonic = time.monotonic() if frozen else None


def advance(seconds: float) -> datetime.datetime:
    """Move a frozen clock (and a frozen monotonic clock) forward by `seconds`; return `now()`."""
    global _frozen, _frozen_monotonic
    if _frozen is None:
        raise RuntimeError("advance() needs a frozen clock")
    _frozen = _frozen + datetime.timedelta(seconds=seconds)
    if _frozen_monotonic is not None:
        _frozen_monotonic += seconds
    return _frozen
