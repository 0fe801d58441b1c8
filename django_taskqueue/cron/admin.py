"""The admin's cron page: each configured job, its schedule in words, last and next run, status.

Registered by `django_taskqueue.admin`. Jobs are configuration; their `CronJobState` rows are
made when first shown, and a row whose job left the configuration is not listed.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib import admin, messages
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from .. import clock
from ..admin_base import ReadMostlyAdmin
from ..conf import taskqueue_settings
from ..models import CronJobState, TaskRecord
from .config import CronJob, all_cron_jobs
from .service import enqueue_run, ensure_states
from .status import describe_task


def _last_task(field: str) -> Subquery:
    rows = TaskRecord.objects.filter(
        queue_name=OuterRef("last_queue_name"), name=OuterRef("last_task_name")
    ).values(field)[:1]
    return Subquery(rows)


@admin.register(CronJobState)
class CronJobAdmin(ReadMostlyAdmin):
    list_display = (
        "job_name",
        "url",
        "schedule",
        "schedule_in_words",
        "last_run_at",
        "next_run",
        "last_status",
    )
    actions = ("run_now",)
    readonly_fields = (
        "key",
        "description",
        "url",
        "schedule",
        "last_slot_at",
        "last_run_at",
        "last_task_name",
        "last_queue_name",
    )
    ordering = ("description", "url")

    def _jobs(self) -> dict[str, CronJob]:
        return {job.key: job for job in all_cron_jobs()}

    def get_queryset(self, request: HttpRequest) -> QuerySet[CronJobState]:
        alias = taskqueue_settings.DATABASE
        jobs = self._jobs()
        ensure_states(list(jobs.values()), clock.now(), alias)
        return (
            super()
            .get_queryset(request)
            .filter(key__in=list(jobs))
            .annotate(
                task_state=_last_task("state"),
                task_code=_last_task("last_response_code"),
                task_retry_count=_last_task("retry_count"),
                task_reason=_last_task("last_retry_reason"),
            )
        )

    def _job(self, obj: CronJobState) -> CronJob | None:
        # Parsed once and cached by cron.config; the admin object is shared by all requests,
        # so nothing per request is kept on it.
        return self._jobs().get(obj.key)

    @admin.display(description=_("job"), ordering="description")
    def job_name(self, obj: CronJobState) -> str:
        return obj.description or obj.url

    @admin.display(description=_("in words"))
    def schedule_in_words(self, obj: CronJobState) -> str:
        job = self._job(obj)
        return job.describe() if job else "-"

    @admin.display(description=_("next run"))
    def next_run(self, obj: CronJobState) -> datetime.datetime | None:
        job = self._job(obj)
        return job.next_run_after(clock.now()) if job else None

    @admin.display(description=_("last status"))
    def last_status(self, obj: Any) -> str:
        # `obj` is a CronJobState row annotated with its last task's columns (get_queryset).
        if not obj.last_task_name:
            return str(_("never run"))
        if getattr(obj, "task_state", None) is None:
            return describe_task(None)
        record = TaskRecord(
            state=obj.task_state,
            last_response_code=obj.task_code,
            retry_count=obj.task_retry_count or 0,
            last_retry_reason=obj.task_reason,
        )
        return describe_task(record)

    @admin.action(description=_("Run selected jobs now"), permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[CronJobState]) -> None:
        jobs = self._jobs()
        now = clock.now()
        count = 0
        for state in queryset:
            job = jobs.get(state.key)
            if job is not None and enqueue_run(job, now=now):
                count += 1
        self.message_user(
            request,
            _("%(count)d cron job(s) enqueued to run now.") % {"count": count},
            messages.SUCCESS,
        )
