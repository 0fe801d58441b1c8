"""The cron service every worker runs: each job's due slot becomes one task named after the slot.

Exactly once across workers: the run of job J for slot S is the task `cron-<J.key>-<S epoch>` in
`CRON_QUEUE`. Every worker serving cron enqueues it when S comes; the queue's name
reservation (a tombstone outlives the task by `TOMBSTONE_SECONDS`) lets exactly one add win,
before or after any restart. Slots are pure functions of the schedule, the time zone and the
time (`cron.schedule`), so all workers agree on them without asking one another.

Cheap when nothing is due: the service keeps each job's next slot in memory and compares it
with the time on every call; it touches the database only when a slot is due, and once when
it starts (to read the jobs' `CronJobState`).

Missed slots: a worker that starts finds in `CronJobState.last_slot_at` the latest slot any
worker enqueued. If a later slot has passed since, the job runs **once**, for the latest of
the missed slots, however many were missed, unless the job sets `skip_missed`. A job seen for
the first time waits for its next slot.

Delivery is a GET to the job's url with `X-AppEngine-Cron: true`, a header no other task can
carry (the `Task` class drops caller-supplied `X-AppEngine-*` headers) and which the task
signature covers. A job without `retry_parameters` is not retried, as on App Engine.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging

from django.db import DatabaseError, InterfaceError
from django.db.models import Q

from ..conf import taskqueue_settings
from ..dispatch.sweep import Sweep
from ..exceptions import TaskAlreadyExistsError, TombstonedTaskError
from ..models import CronJobState
from ..task import CRON_HEADER, Task, TaskRetryOptions
from .config import CronJob, all_cron_jobs

logger = logging.getLogger("django_taskqueue")

_DB_ERRORS = (DatabaseError, InterfaceError)

#: A slot this recent when a worker starts is on time, not missed (a worker restarting
#: at the moment of a slot still runs it, `skip_missed` or not).
ON_TIME_SECONDS = 60.0


def slot_task_name(job: CronJob, slot_at: datetime.datetime) -> str:
    """Return the name of the task of `job`'s run for the slot `slot_at`."""
    return f"cron-{job.key}-{int(slot_at.timestamp())}"


def retry_options(job: CronJob) -> TaskRetryOptions:
    """Return the task retry options of `job`: its retry_parameters, else no retry."""
    if job.retry_parameters is None:
        return TaskRetryOptions(task_retry_limit=0)
    values = dataclasses.asdict(job.retry_parameters)
    return TaskRetryOptions(**{k: v for k, v in values.items() if v is not None})


def enqueue_run(
    job: CronJob,
    *,
    now: datetime.datetime,
    slot_at: datetime.datetime | None = None,
    alias: str | None = None,
) -> str | None:
    """Add the task of one run of `job` and record it; return its name.

    `slot_at`: the slot this run is for; None for a run outside the schedule (the admin's
    "run now"), which gets a name of its own. Returns None when the slot's task already
    exists or existed: another worker ran that slot.
    """
    from ..taskqueue import Queue

    alias = alias or taskqueue_settings.DATABASE
    if slot_at is not None:
        name = slot_task_name(job, slot_at)
    else:
        name = f"cron-{job.key}-now-{int(now.timestamp() * 1000)}"
    # App Engine routes a cron job whose target is unknown to the default service: here, a
    # target that is not a key of TARGETS is delivered in-process (check W064 says so).
    target = job.target if job.target in taskqueue_settings.TARGETS else None
    task = Task(
        url=job.url,
        method="GET",
        name=name,
        target=target,
        retry_options=retry_options(job),
    )
    # The one X-AppEngine-* header a task gets from its creator: Task drops every such header
    # a caller passes, so only this service can mark a request as cron's.
    task._headers[CRON_HEADER] = "true"
    queue_name = taskqueue_settings.CRON_QUEUE
    try:
        Queue(queue_name).add(task)
    except (TaskAlreadyExistsError, TombstonedTaskError):
        return None
    states = CronJobState.objects.using(alias).filter(key=job.key)
    fields = {"last_run_at": now, "last_task_name": name, "last_queue_name": queue_name}
    if slot_at is not None:
        # Conditional: a worker running late must not move the slot back.
        states.filter(Q(last_slot_at__lt=slot_at) | Q(last_slot_at=None)).update(
            last_slot_at=slot_at, **fields
        )
    else:
        states.update(**fields)
    logger.info(
        "event=cron_enqueued job=%s task=%s slot=%s",
        job.key,
        name,
        slot_at.isoformat() if slot_at else "now",
    )
    return name


def ensure_states(
    jobs: list[CronJob], now: datetime.datetime, alias: str
) -> dict[str, CronJobState]:
    """Return the jobs' state rows by key, creating missing ones as of `now`."""
    states = {
        s.key: s for s in CronJobState.objects.using(alias).filter(key__in=[j.key for j in jobs])
    }
    new = [
        CronJobState(
            key=job.key,
            description=job.description,
            url=job.url,
            schedule=job.schedule_text,
            # A new job waits for its next slot: nothing before now counts as missed.
            last_slot_at=job.previous_run_at_or_before(now),
        )
        for job in jobs
        if job.key not in states
    ]
    if new:
        # Several workers may start at once: the first insert of a key wins.
        CronJobState.objects.using(alias).bulk_create(new, ignore_conflicts=True)
        states.update(
            {
                s.key: s
                for s in CronJobState.objects.using(alias).filter(key__in=[s.key for s in new])
            }
        )
    return states


class CronService(Sweep):
    """Enqueue the due slots of the cron jobs; called by the worker on every loop."""

    name = "cron"

    def __init__(self, alias: str, jobs: list[CronJob] | None = None) -> None:
        super().__init__(alias, interval_seconds=0.0)
        self._jobs = jobs
        #: Each job's next slot; None until the first call reads the jobs' state.
        self._next: dict[str, datetime.datetime | None] | None = None

    @property
    def jobs(self) -> list[CronJob]:
        if self._jobs is None:
            self._jobs = all_cron_jobs()
        return self._jobs

    def next_due_at(self) -> datetime.datetime | None:
        """Return the earliest next slot of any job (None before the first call, or no jobs)."""
        if not self._next:
            return None
        return min((at for at in self._next.values() if at is not None), default=None)

    def run(self, now: datetime.datetime) -> int:
        """Enqueue what is due at `now`; return how many tasks were added."""
        if self._next is None:
            return self._start(now)
        added = 0
        for job in self.jobs:
            due = self._next.get(job.key)
            if due is None or due > now:
                continue
            # The latest slot at or before now: if this worker fell behind, it catches up
            # once, on the same slot the other workers are on.
            slot = job.previous_run_at_or_before(now) or due
            try:
                if enqueue_run(job, now=now, slot_at=slot, alias=self.alias):
                    added += 1
            except _DB_ERRORS:
                raise  # the worker reconnects and calls again: the slot is still due
            except Exception:
                # A job whose task cannot be built (a url Task refuses): report it once per
                # slot, not on every loop.
                logger.exception("event=cron_enqueue_failed job=%s", job.key)
            self._next[job.key] = job.next_run_after(now)
        return added

    def _start(self, now: datetime.datetime) -> int:
        jobs = self.jobs
        nexts: dict[str, datetime.datetime | None] = {}
        added = 0
        if jobs:
            states = ensure_states(jobs, now, self.alias)
            for job in jobs:
                added += self._catch_up(job, states.get(job.key), now)
                nexts[job.key] = job.next_run_after(now)
        self._next = nexts
        return added

    def _catch_up(self, job: CronJob, state: CronJobState | None, now: datetime.datetime) -> int:
        latest = job.previous_run_at_or_before(now)
        if latest is None or state is None:
            return 0
        if state.last_slot_at is not None and state.last_slot_at >= latest:
            return 0
        on_time = (now - latest).total_seconds() <= ON_TIME_SECONDS
        if job.skip_missed and not on_time:
            CronJobState.objects.using(self.alias).filter(key=job.key).filter(
                Q(last_slot_at__lt=latest) | Q(last_slot_at=None)
            ).update(last_slot_at=latest)
            logger.info("event=cron_skipped_missed job=%s slot=%s", job.key, latest.isoformat())
            return 0
        return 1 if enqueue_run(job, now=now, slot_at=latest, alias=self.alias) else 0
