"""The outcome recorder: writes the end of one attempt through the task store, typed."""

from __future__ import annotations

import enum
import logging

from .. import clock
from ..db import store
from ..db.rows import ClaimedTask
from ..queues import QueueConfig
from . import outcome as outcomes
from .delivery import Outcome

logger = logging.getLogger("django_taskqueue")


class AttemptStatus(enum.Enum):
    """What became of a task after an attempt, as written."""

    SUCCEEDED = "succeeded"
    RETRY = "retry"
    FAILED = "failed"
    #: Nothing written: the task was deleted, purged or rescued while it ran.
    DROPPED = "dropped"


def status_of(result: Outcome, will_retry: bool, recorded: bool) -> AttemptStatus:
    """Return the status of an attempt whose outcome was (or was not) `recorded`."""
    if not recorded:
        return AttemptStatus.DROPPED
    if result.succeeded:
        return AttemptStatus.SUCCEEDED
    return AttemptStatus.RETRY if will_retry else AttemptStatus.FAILED


class OutcomeRecorder:
    """Write attempts' outcomes (not the batched successes) and releases for one worker."""

    def __init__(self, alias: str, worker_id: str) -> None:
        self.alias = alias
        self.worker_id = worker_id

    def record(self, task: ClaimedTask, config: QueueConfig, result: Outcome) -> AttemptStatus:
        """Write the attempt's outcome; return what became of the task."""
        now = clock.now()
        tasks = store(self.alias)
        if result.succeeded:
            recorded = tasks.succeed(
                task.key, now=now, status_code=result.status_code, return_value=result.return_value
            )
            return status_of(result, False, recorded)
        decision = outcomes.decide(
            retry_count=task.retry_count,
            retry_options=task.retry_options,
            queue_parameters=config.retry_parameters,
            first_attempt_at=task.first_attempt_at,
            now=now,
            may_retry=result.may_retry,
        )
        entry = None
        if result.reports_error:
            entry = outcomes.error_entry(
                now=now,
                attempt=task.attempt,
                reason=result.detail or result.reason,
                status_code=result.status_code,
                error=result.error,
                traceback=result.traceback,
                worker_id=self.worker_id,
            )
        failure = outcomes.failure(
            decision,
            status_code=result.status_code,
            reason=result.reason,
            errors=task.errors,
            new_error=entry,
            reached_handler=result.reached_handler,
        )
        recorded = tasks.retry_or_fail(task.key, failure, now)
        return status_of(result, decision.will_retry, recorded)

    def release(self, task: ClaimedTask) -> None:
        """Give a claimed task that never started back to its queue, as it was."""
        store(self.alias).release(task.key, task.eta)
        logger.info(
            "event=released queue=%s task=%s worker=%s", task.queue_name, task.name, self.worker_id
        )
