"""The worker's counts of attempts, and the summary line it logs now and then."""

from __future__ import annotations

import logging
import threading

from .. import clock
from .recorder import AttemptStatus

logger = logging.getLogger("django_taskqueue")

_COUNTED = {
    AttemptStatus.SUCCEEDED: "succeeded",
    AttemptStatus.RETRY: "retried",
    AttemptStatus.FAILED: "failed",
}


class Tally:
    """Count finished attempts by status; log a summary since the previous one."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self._lock = threading.Lock()
        self._counts = {"ran": 0, "succeeded": 0, "retried": 0, "failed": 0}
        self._summary_counts = dict(self._counts)
        self._summary_at = clock.monotonic()
        self._started_at = self._summary_at

    @property
    def ran(self) -> int:
        return self._counts["ran"]

    def count(self, status: AttemptStatus) -> None:
        with self._lock:
            self._counts["ran"] += 1
            key = _COUNTED.get(status)
            if key:
                self._counts[key] += 1

    def seconds_since_summary(self) -> float:
        return clock.monotonic() - self._summary_at

    def log_summary(self, in_flight: int) -> None:
        """Log what the worker did since the previous summary, and its lifetime count."""
        now_mono = clock.monotonic()
        elapsed = max(now_mono - self._summary_at, 1e-9)
        with self._lock:
            counts = dict(self._counts)
        ran = counts["ran"] - self._summary_counts["ran"]
        failed = counts["failed"] - self._summary_counts["failed"]
        retried = counts["retried"] - self._summary_counts["retried"]
        logger.info(
            # ran/failed/retried count the last `interval`; total_ran, the worker's lifetime.
            "event=summary worker=%s interval=%.0fs ran=%s failed=%s retried=%s rate=%.2f/s "
            "in_flight=%s total_ran=%s",
            self.worker_id,
            elapsed,
            ran,
            failed,
            retried,
            ran / elapsed,
            in_flight,
            counts["ran"],
        )
        self._summary_counts = counts
        self._summary_at = now_mono

    def log_stopped(self) -> None:
        """Log the worker's lifetime totals (the periodic summaries count per interval)."""
        with self._lock:
            counts = dict(self._counts)
        logger.info(
            "event=worker_stopped worker=%s attempts=%s succeeded=%s retried=%s failed=%s "
            "uptime=%.1fs",
            self.worker_id,
            counts["ran"],
            counts["succeeded"],
            counts["retried"],
            counts["failed"],
            clock.monotonic() - self._started_at,
        )
