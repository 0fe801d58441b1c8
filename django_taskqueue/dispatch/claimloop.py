"""The claim loop's round: claim from each served queue in turn while the executor has room."""

from __future__ import annotations

import random
from collections.abc import Callable

from .. import clock
from ..db import store
from ..db.rows import ClaimedTask
from ..queues import QueueConfig
from . import claim as claims


class ClaimRound:
    """One pass over the served queues, starting one queue further each time.

    `capacity()` says how many tasks the next claim may take; `hold(tasks)` is told of a claim's
    tasks first, then `submit(task, config)` hands each claimed task on.

    Where a claim is a transaction of several statements (every store but PostgreSQL's, and
    a queue with `max_concurrent_requests` there), a queue whose last claim found nothing is
    first asked, in one read that locks nothing, whether it has a due task: an idle worker's
    poll is then one statement a second instead of a locking transaction of five or six, and
    it writes nothing. The bucket loses nothing by not being written: a claim refills it from
    the time it was last written, up to its size.
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
        #: The queues whose last claim took nothing and was not held back by their limits.
        self._idle: set[str] = set()
        self._one_statement = store(alias).features.can_claim_in_one_statement

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
            now = clock.now()
            if config.name in self._idle and self._probe_first(config):
                if not claims.has_due_tasks(self.alias, [config.name], now):
                    continue
            result = claims.claim(
                self.alias,
                config,
                now=now,
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
            if result.tasks or result.throttled:
                self._idle.discard(config.name)
            else:
                self._idle.add(config.name)
        return claimed_total, throttled_any, wait

    def _probe_first(self, config: QueueConfig) -> bool:
        """Whether an idle queue is cheaper to ask first: its claim is a transaction."""
        if not self.rate_limits:
            return not self._one_statement
        return not self._one_statement or config.max_concurrent_requests is not None
