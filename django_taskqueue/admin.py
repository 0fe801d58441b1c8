"""The admin dashboard: queues with live statistics and actions, tasks with their details.

Read-mostly: nothing is edited in a form. Every change is an action that calls the public
API (`Queue.pause`, `purge`, `delete_tasks_by_name`) or a state transition of the task rows.
"""

from __future__ import annotations

import datetime
import json
from collections import defaultdict
from typing import Protocol

from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from . import clock, dashboard, figures, humanize
from .admin_base import ReadMostlyAdmin
from .conf import taskqueue_settings
from .db import store
from .models import FINISHED_STATES, QueueState, TaskRecord, TaskRecordQuerySet, TaskState
from .queues import QueueConfig, all_queue_configs
from .taskqueue import Queue

_PREVIEW_BYTES = 4096
_SUMMARY_CHARS = 120


def _relative(seconds: float) -> str:
    """Return a duration the way a person says it: "12 s", "5 min", "3 h", "2 d"."""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    if seconds < 86400:
        return f"{seconds // 3600:.0f} h"
    return f"{seconds // 86400:.0f} d"


def when(at: datetime.datetime | None) -> str:
    """Return a time to the second in the current time zone, with how long ago or ahead it is."""
    if at is None:
        return "-"
    delta = (at - clock.now()).total_seconds()
    if abs(delta) < 1:
        relative = gettext("now")
    elif delta > 0:
        relative = gettext("in %s") % _relative(delta)
    else:
        relative = gettext("%s ago") % _relative(delta)
    local = timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S")
    return format_html('<time datetime="{}">{}</time> ({})', at.isoformat(), local, relative)


def error_summary(text: str | None) -> str:
    """Return the line of an error that says what happened (a traceback's last line)."""
    if not text:
        return "-"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    line = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    return line if len(line) <= _SUMMARY_CHARS else line[: _SUMMARY_CHARS - 1] + "…"


class FiguredQueue(Protocol):
    """A `QueueState` row as the queue list shows it: annotated with its figures."""

    name: str
    paused: bool
    enforced_rate: float | None
    waiting: int

    def rate_at(self, now: datetime.datetime) -> float | None: ...

    oldest: datetime.datetime | None
    running: int
    leased: int
    last_minute: int
    last_hour: int
    failed_minute: int
    failed_hour: int


@admin.register(QueueState)
class QueueAdmin(ReadMostlyAdmin):
    list_display = (
        "name",
        "mode",
        "rate",
        "waiting",
        "oldest_eta",
        "running_or_leased",
        "executed_last_minute",
        "executed_last_hour",
        "failed_last_minute",
        "failed_last_hour",
        "enforced_rate_display",
        "is_paused",
    )
    actions = ("pause", "resume", "purge", "run_now", "retry_failed")
    # Links to the dashboard (`dashboard.py`), which has its own URLs under this admin's.
    change_list_template = "django_taskqueue/admin/queue_change_list.html"
    readonly_fields = ("name", "paused", "tokens", "tokens_at", "enforced_rate", "updated_at")
    ordering = ("name",)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path(
                "dashboard/",
                view(lambda request: dashboard.dashboard_view(request, self)),
                name="django_taskqueue_dashboard",
            ),
            path(
                "dashboard/<str:name>/",
                view(lambda request, name: dashboard.queue_view(request, self, name)),
                name="django_taskqueue_dashboard_queue",
            ),
            *super().get_urls(),
        ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[QueueState]:
        configs = all_queue_configs()
        # Queues come from configuration; their runtime rows are made when first shown.
        QueueState.objects.using(taskqueue_settings.DATABASE).bulk_create(
            [QueueState(name=name) for name in configs], ignore_conflicts=True
        )
        now = clock.now()
        live = figures.correlated(figures.live(now))
        executed = figures.correlated(figures.executed(now))
        failed = figures.correlated(figures.failed(now))
        return (
            super()
            .get_queryset(request)
            .filter(name__in=list(configs))
            .annotate(
                waiting=live["waiting"],
                oldest=live["oldest_eta"],
                running=live["running"],
                leased=live["leased"],
                last_minute=executed["executed_last_minute"],
                last_hour=executed["executed_last_hour"],
                failed_minute=failed["failed_last_minute"],
                failed_hour=failed["failed_last_hour"],
            )
        )

    def _config(self, obj: FiguredQueue) -> QueueConfig | None:
        return all_queue_configs().get(obj.name)

    @admin.display(description=_("mode"))
    def mode(self, obj: FiguredQueue) -> str:
        config = self._config(obj)
        return config.mode if config else "-"

    @admin.display(description=_("rate"))
    def rate(self, obj: FiguredQueue) -> str:
        config = self._config(obj)
        if not config or config.is_pull:
            return "-"
        return f"{config.rate_text}, bucket {config.bucket_size}"

    @admin.display(description=_("waiting"), ordering="waiting")
    def waiting(self, obj: FiguredQueue) -> int:
        return obj.waiting

    @admin.display(description=_("oldest ETA"), ordering="oldest")
    def oldest_eta(self, obj: FiguredQueue) -> str:
        return when(obj.oldest)

    @admin.display(description=_("running/leased"))
    def running_or_leased(self, obj: FiguredQueue) -> int:
        return obj.running + obj.leased

    @admin.display(description=_("run 1 min"))
    def executed_last_minute(self, obj: FiguredQueue) -> int:
        return obj.last_minute

    @admin.display(description=_("run 1 h"))
    def executed_last_hour(self, obj: FiguredQueue) -> int:
        return obj.last_hour

    @admin.display(description=_("failed 1 min"))
    def failed_last_minute(self, obj: FiguredQueue) -> int:
        return obj.failed_minute

    @admin.display(description=_("failed 1 h"))
    def failed_last_hour(self, obj: FiguredQueue) -> int:
        return obj.failed_hour

    @admin.display(description=_("enforced rate"))
    def enforced_rate_display(self, obj: FiguredQueue) -> str:
        return humanize.rate(obj.rate_at(clock.now()))

    @admin.display(description=_("paused"), boolean=True)
    def is_paused(self, obj: FiguredQueue) -> bool:
        config = self._config(obj)
        return bool(obj.paused or (config and config.paused_by_config))

    @admin.action(description=_("Pause selected queues"), permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[QueueState]) -> None:
        for state in queryset:
            Queue(state.name).pause()
        self.message_user(request, _("Paused %d queue(s).") % len(queryset))

    @admin.action(description=_("Resume selected queues"), permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[QueueState]) -> None:
        for state in queryset:
            Queue(state.name).resume()
        self.message_user(request, _("Resumed %d queue(s).") % len(queryset))

    @admin.action(
        description=_("Purge selected queues (delete every task)"), permissions=["change"]
    )
    def purge(self, request: HttpRequest, queryset: QuerySet[QueueState]) -> None:
        for state in queryset:
            Queue(state.name).purge()
        self.message_user(request, _("Purged %d queue(s).") % len(queryset), messages.WARNING)

    @admin.action(description=_("Run waiting tasks now"), permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[QueueState]) -> None:
        names = [state.name for state in queryset]
        alias = taskqueue_settings.DATABASE
        tasks = TaskRecord.objects.using(alias).filter(queue_name__in=names)
        count = store(alias).run_now(tasks, clock.now())
        self.message_user(request, _("%d task(s) are due now.") % count)

    @admin.action(description=_("Retry failed tasks"), permissions=["change"])
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[QueueState]) -> None:
        names = [state.name for state in queryset]
        alias = taskqueue_settings.DATABASE
        tasks = TaskRecord.objects.using(alias).filter(queue_name__in=names)
        count = store(alias).retry_failed(tasks, clock.now())
        self.message_user(request, _("%d failed task(s) queued again.") % count)


@admin.register(TaskRecord)
class TaskAdmin(ReadMostlyAdmin):
    list_display = (
        "name",
        "queue_name",
        "state",
        "method",
        "url",
        "tag",
        "eta_display",
        "retry_count",
        "execution_count",
        "last_response_code",
        "last_error_summary",
        "enqueued_display",
    )
    list_filter = ("state", "queue_name", "method")
    search_fields = ("=name", "tag", "url")
    date_hierarchy = "enqueued_at"
    ordering = ("-enqueued_at",)
    actions = ("run_now", "retry", "delete_tasks")
    list_per_page = 100
    show_full_result_count = False  # a COUNT(*) of the history table on every page is waste
    fields = (
        ("queue_name", "name", "state"),
        ("method", "url", "target", "tag"),
        ("eta_display", "priority", "retry_count", "execution_count"),
        ("enqueued_display", "first_attempt_display", "leased_display", "finished_display"),
        ("worker_id", "last_response_code", "last_retry_reason"),
        "retry_options",
        "headers_display",
        "payload_display",
        "return_value",
        "last_error_display",
        "errors_display",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        return [f for row in self.fields for f in (row if isinstance(row, tuple) else (row,))]

    @admin.display(description=_("ETA"), ordering="eta")
    def eta_display(self, obj: TaskRecord) -> str:
        # A finished task's eta is whatever it was last (often its final lease's expiry):
        # no longer a time anything happens, so it is not shown as one.
        if obj.state in FINISHED_STATES:
            return "-"
        if obj.state == TaskState.RUNNING:
            return format_html("{} {}", _("lease ends"), when(obj.eta))
        if obj.method == "PULL" and obj.leased_at is not None and obj.eta > clock.now():
            return format_html("{} {}", _("leased until"), when(obj.eta))
        return when(obj.eta)

    @admin.display(description=_("enqueued"), ordering="enqueued_at")
    def enqueued_display(self, obj: TaskRecord) -> str:
        return when(obj.enqueued_at)

    @admin.display(description=_("first attempt"))
    def first_attempt_display(self, obj: TaskRecord) -> str:
        return when(obj.first_attempt_at)

    @admin.display(description=_("leased"))
    def leased_display(self, obj: TaskRecord) -> str:
        return when(obj.leased_at)

    @admin.display(description=_("finished"))
    def finished_display(self, obj: TaskRecord) -> str:
        return when(obj.finished_at)

    @admin.display(description=_("last error"))
    def last_error_summary(self, obj: TaskRecord) -> str:
        return error_summary(obj.last_error)

    @admin.display(description=_("headers"))
    def headers_display(self, obj: TaskRecord) -> str:
        return format_html("<pre>{}</pre>", "\n".join(f"{k}: {v}" for k, v in obj.headers))

    @admin.display(description=_("payload"))
    def payload_display(self, obj: TaskRecord) -> str:
        if obj.payload is None:
            return "-"
        data = bytes(obj.payload)
        shown = data[:_PREVIEW_BYTES]
        try:
            text = shown.decode("utf-8")
        except UnicodeDecodeError:
            text = shown.hex(" ")
        more = f"\n… {len(data) - len(shown)} more bytes" if len(data) > len(shown) else ""
        return format_html("<pre>{}{}</pre>", text, more)

    @admin.display(description=_("last error"))
    def last_error_display(self, obj: TaskRecord) -> str:
        return format_html("<pre>{}</pre>", obj.last_error) if obj.last_error else "-"

    @admin.display(description=_("errors of each failed attempt"))
    def errors_display(self, obj: TaskRecord) -> str:
        if not obj.errors:
            return "-"
        return format_html("<pre>{}</pre>", json.dumps(obj.errors, indent=2, default=str))

    @admin.action(description=_("Run selected tasks now"), permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[TaskRecord]) -> None:
        count = store(taskqueue_settings.DATABASE).run_now(queryset, clock.now())
        self.message_user(request, _("%d task(s) are due now.") % count)

    @admin.action(description=_("Retry selected failed tasks"), permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[TaskRecord]) -> None:
        count = store(taskqueue_settings.DATABASE).retry_failed(queryset, clock.now())
        self.message_user(request, _("%d failed task(s) queued again.") % count)

    @admin.action(
        description=_("Delete selected tasks (names stay tombstoned)"), permissions=["change"]
    )
    def delete_tasks(self, request: HttpRequest, queryset: TaskRecordQuerySet) -> None:
        by_queue = defaultdict(list)
        for queue_name, name in queryset.live().values_list("queue_name", "name"):
            by_queue[queue_name].append(name)
        deleted = 0
        for queue_name, names in by_queue.items():
            for start in range(0, len(names), 1000):
                result = Queue(queue_name).delete_tasks_by_name(names[start : start + 1000])
                deleted += sum(task.was_deleted for task in result)
        self.message_user(request, _("Deleted %d task(s).") % deleted)


# The cron jobs' page lives with the cron service; importing it registers it.
from .cron import admin as _cron_admin  # noqa: E402, F401
