"""Database models: task rows (live and tombstoned) and per-queue runtime state."""

from __future__ import annotations

import datetime

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .indexes import PartialIndex


class TaskState(models.TextChoices):
    """The lifecycle of a task row.

    QUEUED     -- added by `Queue.add`; waits until `eta`. A pull task stays QUEUED while
                  leased: its lease *is* its eta (as on App Engine), so an expired lease makes
                  it leasable again with no sweep. Left by a claim (push), delete, purge, or
                  an exhausted lease limit (pull).
    RUNNING    -- a push task claimed by a worker; `eta` is the claim's lease expiry. Left
                  when the attempt ends (SUCCEEDED, back to QUEUED with a backoff, FAILED) or
                  by the rescuer sweep when its worker stopped announcing itself (a dead
                  worker's `WorkerHeartbeat`) or, last resort, when its lease expires.
    SUCCEEDED  -- a push task whose handler answered 2xx. Tombstone for its name.
    FAILED     -- no retry allowed: a push task over its retry limits, a pull task over its
                  lease limit. Kept with its last error; retryable from the admin.
    DELETED    -- removed by `delete_tasks` or `purge`. Tombstone for its name.
    """

    QUEUED = "queued", _("queued")
    RUNNING = "running", _("running")
    SUCCEEDED = "succeeded", _("succeeded")
    FAILED = "failed", _("failed")
    DELETED = "deleted", _("deleted")


LIVE_STATES = (TaskState.QUEUED, TaskState.RUNNING)
FINISHED_STATES = (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.DELETED)

#: The live rows, spelled as the partial indexes of live rows spell them. Filter live rows with
#: this (or `TaskRecord.objects.live()`), not with `state__in=LIVE_STATES`: SQLite uses a
#: partial index only for a query that names its condition, or one of the terms of its OR.
LIVE = Q(state=TaskState.QUEUED) | Q(state=TaskState.RUNNING)


class TaskRecordQuerySet(models.QuerySet["TaskRecord"]):
    """Reads by intention; every write of a task row is a verb of the task store (`db/`)."""

    def live(self) -> TaskRecordQuerySet:
        return self.filter(LIVE)


class TaskRecord(models.Model):
    """One task, from its add until its tombstone is pruned."""

    queue_name = models.CharField(max_length=100)
    name = models.CharField(max_length=500)
    state = models.CharField(max_length=10, choices=TaskState.choices, default=TaskState.QUEUED)
    method = models.CharField(max_length=6, default="POST")
    url = models.TextField(blank=True, default="")
    headers = models.JSONField(default=list, blank=True, help_text=_("[name, value] pairs."))
    payload = models.BinaryField(null=True, blank=True)
    # NULL is "no tag", distinct from the empty tag, as on App Engine.
    tag = models.CharField(max_length=500, null=True, blank=True)  # noqa: DJ001
    target = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    priority = models.SmallIntegerField(default=0)
    eta = models.DateTimeField(help_text=_("When the task is next due; a lease's expiry."))
    retry_count = models.PositiveIntegerField(default=0)
    execution_count = models.PositiveIntegerField(default=0)
    # A database default: the enqueue path's INSERT names its columns and leaves this one out.
    lost_count = models.PositiveIntegerField(
        default=0,
        db_default=0,
        help_text=_(
            "Times a worker died holding the task, started or not; at MAX_WORKER_LOSSES it fails."
        ),
    )
    retry_options = models.JSONField(null=True, blank=True)
    dispatch_deadline_usec = models.BigIntegerField(
        null=True, blank=True, help_text=_("Deadline of each attempt; NULL: the worker's default.")
    )
    enqueued_at = models.DateTimeField()
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    leased_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    last_response_code = models.SmallIntegerField(null=True, blank=True)
    last_retry_reason = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    return_value = models.JSONField(
        null=True, blank=True, help_text=_("What a callable task returned (JSON).")
    )
    errors = models.JSONField(
        default=list,
        blank=True,
        help_text=_("One entry per failed attempt: exception class path, traceback, time."),
    )
    last_error = models.TextField(null=True, blank=True)  # noqa: DJ001

    objects = TaskRecordQuerySet.as_manager()

    class Meta:
        verbose_name = _("task")
        verbose_name_plural = _("tasks")
        constraints = [
            # One row per name and queue, live or tombstoned: the de-duplication of named
            # tasks is this constraint, so it holds across processes without a lock.
            models.UniqueConstraint(fields=["queue_name", "name"], name="taskqueue_unique_name"),
        ]
        # Every index but the unique one is partial where the database allows it (PostgreSQL,
        # SQLite; `PartialIndex`): a row is in an index only while some query can select it
        # through that index. An added task enters three indexes (the primary key, the unique
        # name, due), not six, and a finished row leaves the due and tag indexes, so a large
        # history costs the hot paths nothing. Each query that relies on one of them states
        # its condition, or something the database can prove implies it (`PartialIndex`).
        indexes = [
            # Dispatch and lease: due tasks of a queue, highest priority then oldest eta; the
            # running count of a queue, the rescuer's expired and lost claims, the live figures.
            PartialIndex(
                fields=["queue_name", "state", "-priority", "eta"],
                name="taskqueue_due_idx",
                where=LIVE,
            ),
            # lease_tasks_by_tag of a tag (the untagged tasks are read through the due index).
            PartialIndex(
                fields=["queue_name", "state", "tag", "eta"],
                name="taskqueue_tag_idx",
                where=LIVE & Q(tag__isnull=False),
            ),
            # Pruning tombstones and history, and "failed in the last minute/hour" figures.
            PartialIndex(
                fields=["state", "finished_at"],
                name="taskqueue_finished_idx",
                where=Q(finished_at__isnull=False),
            ),
            # "executed in the last minute/hour" figures, the dashboard's slowest tasks.
            PartialIndex(
                fields=["queue_name", "leased_at"],
                name="taskqueue_leased_idx",
                where=Q(leased_at__isnull=False),
            ),
            # The dashboard's errors by reason: the rows with a retry reason, a few among many
            # (read through the leased index, a day of a busy queue's history was read row by
            # row to find them). Where it is partial no task enters it until an attempt fails,
            # and its leased_at lets SQLite's planner prefer it to the leased index. Where it
            # is full (MariaDB, MySQL) the reason comes first: the rows without one are one
            # range the query skips, and a claim, which changes leased_at, does not touch it.
            PartialIndex(
                fields=["queue_name", "leased_at", "last_retry_reason"],
                full_fields=["queue_name", "last_retry_reason"],
                name="taskqueue_reason_idx",
                where=Q(last_retry_reason__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.queue_name}/{self.name}"

    @property
    def is_pull(self) -> bool:
        return self.method == "PULL"


class QueueState(models.Model):
    """Runtime state of a queue shared by every worker: pause flag and token bucket.

    Configuration (rate, retry parameters, mode) lives in queue.yaml / settings; this row
    holds only what changes at run time. Rows are created lazily by the worker and the
    admin, never by an enqueue (an enqueue must not touch a shared row).
    """

    name = models.CharField(max_length=100, primary_key=True)
    paused = models.BooleanField(default=False)
    tokens = models.FloatField(default=0.0)
    tokens_at = models.DateTimeField(null=True, blank=True)
    enforced_rate = models.FloatField(null=True, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("queue")
        verbose_name_plural = _("queues")

    def __str__(self) -> str:
        return self.name

    def rate_at(self, now: datetime.datetime) -> float | None:
        """Return the dispatch rate as of `now`: the figure the last claim wrote, decayed since.

        Claims write the figure; a queue with nothing due is not claimed from (an idle worker
        only asks whether anything is due), so a reader decays it to the time it reads.
        """
        from .ratelimit import measured_rate

        if self.enforced_rate is None or self.tokens_at is None:
            return self.enforced_rate
        return measured_rate(self.enforced_rate, self.tokens_at, now, 0)


class QueueMinuteStats(models.Model):
    """What the workers did to a queue in one minute (or hour), and its backlog at the minute's start.

    Workers count attempts in memory and add them here in one upsert per flush (never a write
    per task): to the minute's row, the hour's row (`span` 3600, which the day's chart reads)
    and the queue's totals row (`span` 0, the metrics endpoint's counters, never pruned). The
    counters are additive, so every worker adds its own share to the same rows without a lock.
    `waiting`, `running` and `leased` are samples taken once a minute by one worker (the first
    to insert the minute's marker row, whose `queue_name` is empty). Pruned after
    `STATS_RETENTION_SECONDS`.
    """

    queue_name = models.CharField(max_length=100)
    span = models.PositiveIntegerField(
        default=60, help_text=_("Seconds the row covers: 60, 3600, or 0 for the totals.")
    )
    starts_at = models.DateTimeField(help_text=_("Start of the minute or hour (UTC)."))
    # 64-bit: a queue's totals row counts every attempt since the queue began.
    executed = models.PositiveBigIntegerField(default=0, help_text=_("Attempts finished."))
    failed = models.PositiveBigIntegerField(
        default=0, help_text=_("Attempts that failed for good.")
    )
    retried = models.PositiveBigIntegerField(
        default=0, help_text=_("Failed attempts queued again after a backoff.")
    )
    run_seconds = models.FloatField(default=0.0, help_text=_("Sum of the attempts' run times."))
    max_run_seconds = models.FloatField(default=0.0)
    waiting = models.PositiveIntegerField(null=True, blank=True, help_text=_("Due tasks."))
    running = models.PositiveIntegerField(null=True, blank=True)
    leased = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = _("queue statistics")
        verbose_name_plural = _("queue statistics")
        constraints = [
            # The upsert's conflict target; it also serves "these queues' minutes since then".
            models.UniqueConstraint(
                fields=["queue_name", "span", "starts_at"], name="taskqueue_stats_unique"
            ),
        ]
        indexes = [
            # Pruning.
            models.Index(fields=["starts_at"], name="taskqueue_stats_starts_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.queue_name}@{self.starts_at:%Y-%m-%d %H:%M}/{self.span}s"


class CronJobState(models.Model):
    """What the workers remember of one cron job: its last slot and its last run.

    The jobs themselves are configuration (cron.yaml, `CRON`); a row is keyed by the job's
    `key` and created by the first worker that serves the job. `last_slot_at` is how a
    starting worker knows which slots were missed while no worker ran; the task names
    (`cron-<key>-<slot>`) are what keeps a slot from running twice.
    """

    key = models.CharField(max_length=64, primary_key=True)
    description = models.CharField(max_length=500, blank=True, default="")
    url = models.TextField(blank=True, default="")
    schedule = models.CharField(max_length=500, blank=True, default="")
    last_slot_at = models.DateTimeField(
        null=True, blank=True, help_text=_("The latest slot a worker has enqueued or skipped.")
    )
    last_run_at = models.DateTimeField(
        null=True, blank=True, help_text=_("When the job's latest task was enqueued.")
    )
    last_task_name = models.CharField(max_length=500, blank=True, default="")
    last_queue_name = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        verbose_name = _("cron job")
        verbose_name_plural = _("cron jobs")

    def __str__(self) -> str:
        return self.description or self.url or self.key


class DeferredPayload(models.Model):
    """A `deferred` call too large for its task, which carries only this row's key.

    App Engine keeps such calls in a datastore entity. The row is written in the same
    transaction as its task, deleted when the call succeeds, and otherwise pruned with its task.
    """

    key = models.UUIDField(primary_key=True)
    queue_name = models.CharField(max_length=100)
    # Set once the task is added (an unnamed task's name is chosen by the add).
    task_name = models.CharField(max_length=500, null=True, blank=True)  # noqa: DJ001
    payload = models.BinaryField()
    created_at = models.DateTimeField()

    class Meta:
        verbose_name = _("deferred payload")
        verbose_name_plural = _("deferred payloads")
        indexes = [
            # Pruning: the payloads whose task is gone.
            models.Index(fields=["queue_name", "task_name"], name="taskqueue_deferred_task_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.queue_name}/{self.task_name or self.key}"


class UsedSignature(models.Model):
    """A task request signature that a web process has accepted once, and will not again.

    Written by `security.verify` when it accepts an HTTP task request, on the queue's database
    so every web process sees it; the primary key makes a second acceptance of the same
    signature fail, even from two processes at the same instant. A row is useless once its
    signature is too old to verify (`SIGNATURE_MAX_AGE_SECONDS` after `signed_at`), and
    `verify` deletes such rows from time to time.
    """

    mac = models.CharField(max_length=64, primary_key=True)
    signed_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = _("used signature")
        verbose_name_plural = _("used signatures")

    def __str__(self) -> str:
        return self.mac


class WorkerHeartbeat(models.Model):
    """A running worker, announcing itself: its row is rewritten every `HEARTBEAT_INTERVAL_SECONDS`.

    Written by the worker's heartbeat service (`dispatch.heartbeat`: one UPDATE per interval,
    never one per task) and deleted when the worker exits cleanly. A row whose `beat_at` is
    older than `WORKER_TIMEOUT_SECONDS` belongs to a worker that died: the rescuer sweep queues
    its RUNNING tasks again, charging an attempt only to those in `started`, and deletes the row.
    """

    worker_id = models.CharField(max_length=64, primary_key=True)
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField(db_index=True)
    started = models.JSONField(
        default=list,
        blank=True,
        help_text=_("Ids of the tasks whose attempt had started and was not yet written."),
    )

    class Meta:
        verbose_name = _("worker heartbeat")
        verbose_name_plural = _("worker heartbeats")

    def __str__(self) -> str:
        return self.worker_id
