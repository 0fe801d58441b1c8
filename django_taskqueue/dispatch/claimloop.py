"""The claim loop's round: claim from each served queue in turn while the executor has room."""

from __future__ import annotations

import random
from collections.abc import Callable

from .. import clock
from ..db.rows import ClaimedTask
from ..queues import QueueConfig
from . import claim as claims


class ClaimRound:
    """One pass over the served queues, starting one queue further each time.

    `capacity()` says how many tasks the next claim may take; `hold(tasks)` is told of a claim's
    tasks first, then `submit(task, config)` hands each claimed task on.
    """

    def __init__(
        self,
        alias: str,
        worker_id: str,
        configs: list[QueueConfig],
        *,
        lease_seconds: float,
        rate_limits: bool,
        poll_interval_seconds: float,
        capacity: Callable[[], int],
        submit: Callable[[ClaimedTask, QueueConfig], None],
        stopping: Callable[[], bool],
        hold: Callable[[list[ClaimedTask]], None] | None = None,
    ) -> None:
        self.alias = alias
        self.worker_id = worker_id
        self.configs = configs
        self.lease_seconds = lease_seconds
        self.rate_limits = rate_limits
        self.poll_interval_seconds = poll_interval_seconds
        self.capacity = capacity
        self.submit = submit
        self.stopping = stopping
        #: Called with a claim's tasks before any is submitted (the worker keeps the unstarted).
        self.hold = hold
        self._rotation = 0

    def run(self) -> tuple[int, bool, float]:
        """Claim from each queue while there is room; return (claimed, throttled, wait)."""
        claimed_total, throttled_any = 0, False
        wait = self.poll_interval_seconds
        n = len(self.configs)
        # Start each round at the next queue, so a busy queue cannot starve the others.
        order = [self.configs[(self._rotation + i) % n] for i in range(n)] if n else []
        self._rotation += 1
        for config in order:
            capacity = self.capacity()
            if capacity <= 0 or self.stopping():
                break
            result = claims.claim(
                self.alias,
                config,
                now=clock.now(),
                worker_id=self.worker_id,
                max_tasks=capacity,
                lease_seconds=self.lease_seconds,
                rate_limits=self.rate_limits,
            )
            if result.throttled:
                throttled_any = True
                if result.wait_seconds is not None:
                    # A little jitter: workers waiting for the same token do not all wake at
                    # the same instant, and no one of them wins every token.
                    jitter = random.uniform(0, 0.01)
                    wait = min(wait, result.wait_seconds + jitter)
            if self.hold is not None and result.tasks:
                self.hold(result.tasks)
            for task in result.tasks:
                self.submit(task, config)
            claimed_total += len(result.tasks)
        return claimed_total, throttled_any, wait
