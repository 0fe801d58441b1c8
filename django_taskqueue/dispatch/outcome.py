"""The end of an attempt decided: success, a retry after a backoff, or failure for good.

The retry decision is App Engine's (`retry.py`): the task's own retry options wholly, else its
queue's; it may retry unless it has exceeded its limits, the age limit counting from its first
attempt. The store writes the outcome (`TaskStore.succeed`, `retry_or_fail`, `mark_succeeded`)
in one conditional UPDATE: it applies only while the row is still RUNNING under the claim that
produced the outcome, so a task deleted or purged meanwhile stays deleted, and a task the
rescuer took back (lease expired) is not overwritten.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from .. import exceptions
from ..db import store
from ..db.rows import ClaimKey, Failure
from ..queues import get_queue_config
from ..retry import RetryParameters, backoff_seconds, can_retry, effective_retry_parameters

#: How many failed attempts a task's `errors` keeps (the most recent).
MAX_ERRORS_KEPT = 20


@dataclass(frozen=True)
class Decision:
    """What happens to a task after a failed attempt."""

    will_retry: bool
    failures: int
    eta: datetime.datetime | None


def queue_retry_parameters(queue_name: str) -> RetryParameters | None:
    """Return the queue's retry parameters, or None (a queue no longer configured has none)."""
    try:
        return get_queue_config(queue_name).retry_parameters
    except exceptions.Error:
        return None


def decide(
    *,
    retry_count: int,
    retry_options: dict[str, Any] | None,
    queue_parameters: RetryParameters | None,
    first_attempt_at: datetime.datetime | None,
    now: datetime.datetime,
    may_retry: bool = True,
) -> Decision:
    """Decide the fate of a task whose attempt number `retry_count + 1` just failed."""
    failures = retry_count + 1
    params = effective_retry_parameters(retry_options, queue_parameters)
    age = (now - (first_attempt_at or now)).total_seconds()
    if may_retry and can_retry(params, failures, age):
        eta = now + datetime.timedelta(seconds=backoff_seconds(params, failures))
        return Decision(True, failures, eta)
    return Decision(False, failures, None)


def error_entry(
    *,
    now: datetime.datetime,
    attempt: int,
    reason: str | None,
    status_code: int | None,
    error: BaseException | None,
    traceback: str | None,
    worker_id: str | None,
) -> dict[str, Any]:
    """Return the `errors` entry of one failed attempt."""
    return {
        "at": now.isoformat(),
        "attempt": attempt,
        "reason": reason,
        "status_code": status_code,
        "exception": (
            f"{type(error).__module__}.{type(error).__qualname__}" if error is not None else None
        ),
        "traceback": traceback,
        "worker_id": worker_id,
    }


def failure(
    decision: Decision,
    *,
    status_code: int | None,
    reason: str | None,
    errors: list[Any],
    new_error: dict[str, Any] | None,
    reached_handler: bool,
) -> Failure:
    """Return what the store writes for a failed attempt: its decision and error history."""
    if new_error is not None:
        errors = [*errors, new_error][-MAX_ERRORS_KEPT:]
    return Failure(
        will_retry=decision.will_retry,
        failures=decision.failures,
        eta=decision.eta,
        status_code=status_code,
        reason=reason,
        errors=errors,
        last_error=(new_error["traceback"] or new_error["reason"]) if new_error else None,
        reached_handler=reached_handler,
    )


@dataclass(frozen=True)
class Held:
    """A task as one claim holds it, on the database `alias`."""

    alias: str
    key: ClaimKey


def running_row(
    task_id: int, worker_id: str | None, leased_at: datetime.datetime | None, alias: str
) -> Held:
    """Return the task as held by that claim; a write through it applies only while it is."""
    return Held(alias, ClaimKey(task_id, worker_id, leased_at))


def record_success(
    held: Held,
    *,
    now: datetime.datetime,
    status_code: int | None,
    return_value: Any,
) -> bool:
    """Mark the claimed task SUCCEEDED; return False if it was no longer ours."""
    return store(held.alias).succeed(
        held.key, now=now, status_code=status_code, return_value=return_value
    )


def record_successes(
    alias: str,
    worker_id: str,
    done: list[tuple[int, datetime.datetime | None, int | None]],
    *,
    now: datetime.datetime,
) -> set[int]:
    """Mark claimed tasks SUCCEEDED, one UPDATE per (claim, status code); return the ids written.

    `done` holds (task id, the claim's leased_at, status code). A task deleted, purged or
    rescued since its claim is not ours any more and is left alone.
    """
    groups: dict[tuple[Any, Any], list[int]] = {}
    for task_id, leased_at, status_code in done:
        groups.setdefault((leased_at, status_code), []).append(task_id)
    tasks = store(alias)
    if len(groups) == 1:  # the usual case: one statement, atomic by itself
        [((leased_at, status_code), ids)] = groups.items()
        return tasks.mark_succeeded(ids, worker_id, leased_at, status_code, now)
    recorded: set[int] = set()
    # One transaction: one commit for the whole batch, whatever the number of groups.
    with transaction.atomic(using=alias):
        for (leased_at, status_code), ids in groups.items():
            recorded |= tasks.mark_succeeded(ids, worker_id, leased_at, status_code, now)
    return recorded
