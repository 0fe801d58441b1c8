"""Database models: task rows (live and tombstoned) and per-queue runtime state."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class TaskState(models.TextChoices):
    """The lifecycle of a task row.

    QUEUED     -- added by `Queue.add`; waits until `eta`. A pull task stays QUEUED while
                  leased: its lease *is* its eta (as on App Engine), so an expired lease makes
                  it leasable again with no sweep. Left by a claim (push), delete, purge, or
                  an exhausted lease limit (pull).
    RUNNING    -- a push task claimed by a worker; `eta` is the claim's lease expiry. Left
                  when the attempt ends (SUCCEEDED, back to QUEUED with a backoff, FAILED) or
                  by the rescuer sweep when the lease expires (the worker died).
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


class TaskRecordQuerySet(models.QuerySet):
    def live(self):
        return self.filter(state__in=LIVE_STATES)

    def finished(self):
        return self.filter(state__in=FINISHED_STATES)

    def due(self, now):
        return self.filter(state=TaskState.QUEUED, eta__lte=now)

    def of_queue(self, queue_name: str):
        return self.filter(queue_name=queue_name)

    def run_now(self, now) -> int:
        """Make waiting tasks due at `now`; return how many."""
        return self.filter(state=TaskState.QUEUED).update(eta=now)

    def retry(self, now) -> int:
        """Queue failed tasks again from a fresh start (counts and age limit reset)."""
        return self.filter(state=TaskState.FAILED).update(
            state=TaskState.QUEUED,
            eta=now,
            finished_at=None,
            retry_count=0,
            execution_count=0,
            first_attempt_at=None,
            worker_id=None,
        )


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
    retry_options = models.JSONField(null=True, blank=True)
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
        indexes = [
            # Dispatch and lease: due tasks of a queue, highest priority then oldest eta.
            # `state` leads after the queue so finished history never enters the scan.
            models.Index(
                fields=["queue_name", "state", "-priority", "eta"], name="taskqueue_due_idx"
            ),
            # lease_tasks_by_tag.
            models.Index(fields=["queue_name", "state", "tag", "eta"], name="taskqueue_tag_idx"),
            # Pruning tombstones and history, and "finished in the last minute" figures.
            models.Index(fields=["state", "finished_at"], name="taskqueue_finished_idx"),
            # "executed in the last minute/hour" figures.
            models.Index(fields=["queue_name", "leased_at"], name="taskqueue_leased_idx"),
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
