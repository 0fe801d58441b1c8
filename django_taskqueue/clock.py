"""The one reader of wall-clock time, so tests can freeze it."""

from __future__ import annotations

import datetime
import time

_frozen: datetime.datetime | None = None


def now() -> datetime.datetime:
    """Return the current time as an aware UTC datetime."""
    if _frozen is not None:
        return _frozen
    return datetime.datetime.now(datetime.UTC)


def monotonic() -> float:
    """Return a monotonic clock reading in seconds (intervals, never stored)."""
    return time.monotonic()


def freeze(at: datetime.datetime | None) -> None:
    """Freeze `now()` at `at` (aware), or unfreeze with None. For tests."""
    global _frozen
    if at is not None and at.tzinfo is None:
        raise ValueError("freeze() takes an aware datetime")
    _frozen = at.astimezone(datetime.UTC) if at is not None else None


def advance(seconds: float) -> datetime.datetime:
    """Move a frozen clock forward by `seconds` and return the new time."""
    global _frozen
    if _frozen is None:
        raise RuntimeError("advance() needs a frozen clock")
    _frozen = _frozen + datetime.timedelta(seconds=seconds)
    return _frozen
