"""The token bucket of a push queue, as pure functions of the stored state and the time.

Each queue has one bucket, shared by every worker: its level (`QueueState.tokens`) and the time
it was last brought up to date (`QueueState.tokens_at`) live in the database, and a claim reads,
refills, spends and writes them back while it holds the queue's row lock. These functions do the
arithmetic; they never read the clock.
"""

from __future__ import annotations

import datetime
import math


def refill(
    tokens: float,
    tokens_at: datetime.datetime | None,
    now: datetime.datetime,
    rate: float,
    bucket_size: int,
) -> float:
    """Return the bucket's level at `now`: `tokens` at `tokens_at` plus `rate` per second.

    A bucket never used (`tokens_at` None) starts full, as App Engine's does. The level never
    exceeds `bucket_size`. A `now` before `tokens_at` (another machine's clock is ahead) adds
    nothing rather than taking tokens away.
    """
    if tokens_at is None:
        return float(bucket_size)
    elapsed = max(0.0, (now - tokens_at).total_seconds())
    return min(float(bucket_size), tokens + elapsed * rate)


def available(tokens: float) -> int:
    """Return how many whole tokens, hence dispatches, the level allows now."""
    # A level such as 0.9999999997 after float arithmetic is one token, not zero.
    return max(0, math.floor(tokens + 1e-9))


def seconds_until_token(tokens: float, rate: float) -> float | None:
    """Return how long until the level reaches one whole token (0 if it has), None if never."""
    if available(tokens) >= 1:
        return 0.0
    if rate <= 0:
        return None
    return (1.0 - tokens) / rate


#: How far back the measured dispatch rate looks, roughly (the decay's time constant).
RATE_TIME_CONSTANT_SECONDS = 10.0


def measured_rate(
    rate: float | None,
    rate_at: datetime.datetime | None,
    now: datetime.datetime,
    dispatched: int,
    time_constant: float = RATE_TIME_CONSTANT_SECONDS,
) -> float:
    """Return the queue's dispatch rate after `dispatched` more tasks at `now` (tasks/s).

    An exponentially decaying count: each dispatch adds `1 / time_constant` and the sum decays
    by `exp(-elapsed / time_constant)`, so tasks dispatched steadily at r per second read as r,
    and an idle queue's figure falls towards 0. It needs one number and one time, which the
    claim already writes to the queue's row under its lock: no extra write per task.
    """
    previous = 0.0
    if rate is not None and rate_at is not None:
        elapsed = max(0.0, (now - rate_at).total_seconds())
        previous = rate * math.exp(-elapsed / time_constant)
    return previous + dispatched / time_constant
