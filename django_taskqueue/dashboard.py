"""The admin dashboard: every queue's figures and charts on one page, and a page per queue.

The figures come from the live task rows (waiting, running, leased: one grouped query) and
from the per-minute statistics the workers write (`QueueMinuteStats`: one query for the last
hour by minute, one for the last day by hour), so the page costs the same few queries whatever
the number of queues and however long the history. The pages refresh themselves: a small
script fetches the same URL with `?fragment=1` every few seconds and swaps the figures in.

Actions are the queue admin's own (`QueueAdmin.get_actions`), so permissions and messages are
the change list's.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, DurationField, ExpressionWrapper, F, Max
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext as _

from . import charts, clock, figures, humanize
from .conf import taskqueue_settings
from .dispatch.minute_stats import HOUR, MINUTE
from .models import QueueMinuteStats, QueueState, TaskRecord, TaskState
from .queues import QueueConfig, all_queue_configs

#: How often the pages fetch fresh figures.
REFRESH_SECONDS = 5
MINUTES = 60
HOURS = 24


@dataclass
class QueueView:
    """One queue as the dashboard shows it."""

    config: QueueConfig
    paused: bool = False
    enforced_rate: float | None = None
    waiting: int = 0
    oldest_due_at: datetime.datetime | None = None
    running: int = 0
    leased: int = 0
    minutes: list[charts.Slot] = field(default_factory=list)
    hours: list[charts.Slot] = field(default_factory=list)
    backlog: list[int | None] = field(default_factory=list)
    now: datetime.datetime | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def executed_last_hour(self) -> int:
        return sum(s.executed for s in self.minutes)

    @property
    def failed_last_hour(self) -> int:
        return sum(s.failed for s in self.minutes)

    @property
    def retried_last_hour(self) -> int:
        return sum(s.retried for s in self.minutes)

    @property
    def executed_last_day(self) -> int:
        return sum(s.executed for s in self.hours)

    @property
    def oldest_age_seconds(self) -> float | None:
        if self.oldest_due_at is None or self.now is None:
            return None
        return max(0.0, (self.now - self.oldest_due_at).total_seconds())

    @property
    def oldest_age(self) -> str:
        return humanize.age(self.oldest_age_seconds) if self.oldest_due_at else "-"

    @property
    def in_flight(self) -> str:
        if self.config.is_pull:
            return humanize.count(self.leased)
        cap = self.config.max_concurrent_requests
        return f"{self.running:,} / {cap:,}" if cap else f"{self.running:,}"

    @property
    def rate(self) -> str:
        if self.config.is_pull:
            return "-"
        configured = humanize.rate(self.config.rate)
        return f"{humanize.rate(self.enforced_rate or 0.0)} / {configured}"

    @property
    def rate_text(self) -> str:
        if self.config.is_pull:
            return _("pull")
        return f"{self.config.rate_text or humanize.rate(self.config.rate)}, bucket " + str(
            self.config.bucket_size
        )

    def minute_chart(self, width: int = 180, height: int = 32, axis: bool = False) -> str:
        title = _("%(queue)s: attempts per minute, last hour") % {"queue": self.name}
        return charts.outcome_bars(self.minutes, width=width, height=height, title=title, axis=axis)

    def hour_chart(self, width: int = 120, height: int = 32, axis: bool = False) -> str:
        title = _("%(queue)s: attempts per hour, last day") % {"queue": self.name}
        return charts.outcome_bars(self.hours, width=width, height=height, title=title, axis=axis)

    def backlog_chart(self, width: int = 120, height: int = 32, axis: bool = False) -> str:
        title = _("%(queue)s: tasks waiting, last hour") % {"queue": self.name}
        labels = [slot.label for slot in self.minutes]
        return charts.line(self.backlog, labels, width=width, height=height, title=title, axis=axis)

    # Sizes of the queue's own page.
    def minute_chart_large(self) -> str:
        return self.minute_chart(720, 160, axis=True)

    def hour_chart_large(self) -> str:
        return self.hour_chart(720, 160, axis=True)

    def backlog_chart_large(self) -> str:
        return self.backlog_chart(720, 160, axis=True)


def _label(at: datetime.datetime, hourly: bool = False) -> str:
    local = timezone.localtime(at) if timezone.is_aware(at) else at
    return local.strftime("%a %H:00" if hourly else "%H:%M")


def overview(
    names: list[str] | None = None, now: datetime.datetime | None = None
) -> list[QueueView]:
    """Return the queues named (default: every configured queue) with figures and series.

    Four queries whatever the number of queues: runtime states, live rows, the last hour's
    minutes, the last day's hours.
    """
    configs = all_queue_configs()
    names = sorted(configs) if names is None else [n for n in names if n in configs]
    now = now or clock.now()
    alias = taskqueue_settings.DATABASE
    views = {name: QueueView(configs[name], now=now) for name in names}
    for state in QueueState.objects.using(alias).filter(name__in=names):
        view = views[state.name]
        view.paused = state.paused
        view.enforced_rate = state.rate_at(now)
    for view in views.values():
        view.paused = view.paused or view.config.paused_by_config
    for name, live in figures.by_queue(alias, names, figures.live(now)).items():
        view = views[name]
        view.waiting, view.oldest_due_at = live["waiting"], live["oldest_due_at"]
        view.running, view.leased = live["running"], live["leased"]

    this_minute = now.replace(second=0, microsecond=0)
    minutes = [this_minute - datetime.timedelta(minutes=MINUTES - 1 - i) for i in range(MINUTES)]
    index = {minute: i for i, minute in enumerate(minutes)}
    labels = [_label(m) for m in minutes]
    by_minute: dict[str, list[charts.Slot]] = {n: [charts.Slot(lb) for lb in labels] for n in names}
    backlog: dict[str, list[int | None]] = {n: [None] * MINUTES for n in names}
    stats = QueueMinuteStats.objects.using(alias).filter(queue_name__in=names)
    for row in stats.filter(span=MINUTE, starts_at__gte=minutes[0]).values(
        "queue_name", "starts_at", "executed", "failed", "retried", "waiting"
    ):
        i = index.get(row["starts_at"])
        if i is None:
            continue
        name = row["queue_name"]
        by_minute[name][i] = charts.Slot(labels[i], row["executed"], row["failed"], row["retried"])
        backlog[name][i] = row["waiting"]

    this_hour = this_minute.replace(minute=0)
    hours = [this_hour - datetime.timedelta(hours=HOURS - 1 - i) for i in range(HOURS)]
    hour_index = {hour: i for i, hour in enumerate(hours)}
    hour_labels = [_label(h, hourly=True) for h in hours]
    by_hour = {n: [charts.Slot(lb) for lb in hour_labels] for n in names}
    hourly = stats.filter(span=HOUR, starts_at__gte=hours[0]).values(
        "queue_name", "starts_at", "executed", "failed", "retried"
    )
    for hour_row in hourly:
        i = hour_index.get(hour_row["starts_at"])
        if i is not None:
            by_hour[hour_row["queue_name"]][i] = charts.Slot(
                hour_labels[i], hour_row["executed"], hour_row["failed"], hour_row["retried"]
            )
    for name, view in views.items():
        view.minutes, view.hours, view.backlog = by_minute[name], by_hour[name], backlog[name]
    return [views[name] for name in names]


def recent_errors(queue_name: str, now: datetime.datetime, limit: int = 10) -> list[dict[str, Any]]:
    """Return the last day's failed attempts of a queue grouped by reason, most frequent first."""
    since = now - datetime.timedelta(days=1)
    rows = list(errors_by_reason(queue_name, since)[:limit])
    return [{**row, "ago": humanize.age((now - row["last_at"]).total_seconds())} for row in rows]


def errors_by_reason(queue_name: str, since: datetime.datetime) -> Any:
    """The query of `recent_errors`: a queue's attempts since `since` with a retry reason,
    counted by reason (it reads the retry reason index, `taskqueue_reason_idx`)."""
    return (
        TaskRecord.objects.using(taskqueue_settings.DATABASE)
        .filter(queue_name=queue_name, leased_at__gte=since, last_retry_reason__isnull=False)
        .values("last_retry_reason")
        .annotate(tasks=Count("id"), last_at=Max("leased_at"), example=Max("id"))
        .order_by("-tasks", "-last_at")
    )


#: The most recent claims of a queue that its slowest tasks are picked from. A busy queue's
#: hour holds hundreds of thousands of attempts, and sorting them all by run time made its
#: page take seconds (300,000 in the hour: 130 ms on PostgreSQL, 500 ms on MariaDB).
SLOWEST_SCAN = 10_000


def slowest_tasks(
    queue_name: str, now: datetime.datetime, limit: int = 10, scan: int = SLOWEST_SCAN
) -> list[Any]:
    """Return the last hour's finished tasks of a queue that took longest from claim to outcome.

    Among the queue's last `scan` claims of the hour: the first query finds the claim time of
    the `scan`-th most recent one (a read of the leased index), the second sorts the claims
    since then. Two bounded reads whatever the queue's traffic.
    """
    since = now - datetime.timedelta(hours=1)
    claimed = TaskRecord.objects.using(taskqueue_settings.DATABASE).filter(
        queue_name=queue_name, leased_at__gte=since
    )
    oldest = list(
        claimed.order_by("-leased_at").values_list("leased_at", flat=True)[scan - 1 : scan]
    )
    if oldest:
        claimed = claimed.filter(leased_at__gte=oldest[0])
    run = ExpressionWrapper(F("finished_at") - F("leased_at"), output_field=DurationField())
    # Any: each row gains a `run_display` for the template.
    rows: list[Any] = list(
        claimed.filter(
            state__in=(TaskState.SUCCEEDED, TaskState.FAILED),
            finished_at__isnull=False,
        )
        .exclude(method="PULL")
        .annotate(run=run)
        .order_by("-run")
        .only("id", "name", "url", "state", "leased_at", "finished_at", "execution_count")[:limit]
    )
    for row in rows:
        row.run_display = humanize.duration(row.run.total_seconds() if row.run else None)
    return rows


# -- views ------------------------------------------------------------------------------------


def _action_parts(entry: Any) -> tuple[Any, str, Any]:
    """Return an admin action's function, name and description.

    Django 6.1 hands out `Action` objects and deprecates reading them as tuples; Django 5.2 and
    6.0 hand out plain `(function, name, description)` tuples.
    """
    if hasattr(entry, "func"):
        return entry.func, entry.name, entry.description
    function, name, description = entry
    return function, name, description


def _handle_action(
    request: HttpRequest, model_admin: admin.ModelAdmin, names: list[str]
) -> HttpResponse:
    action = request.POST.get("action", "")
    queue_name = request.POST.get("queue", "")
    if queue_name not in names:
        raise Http404(_("No queue named %(queue)s") % {"queue": queue_name})
    entry = model_admin.get_actions(request).get(action)
    if entry is None:
        raise PermissionDenied
    alias = taskqueue_settings.DATABASE
    QueueState.objects.using(alias).bulk_create(
        [QueueState(name=queue_name)], ignore_conflicts=True
    )
    function = _action_parts(entry)[0]
    function(model_admin, request, QueueState.objects.using(alias).filter(name=queue_name))
    return HttpResponseRedirect(request.get_full_path())


def _context(request: HttpRequest, model_admin: admin.ModelAdmin, **extra: Any) -> dict[str, Any]:
    actions = model_admin.get_actions(request)
    return {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "refresh_seconds": REFRESH_SECONDS,
        "can_act": bool(actions),
        "actions": {
            name: str(description)
            for _function, name, description in map(_action_parts, filter(None, actions.values()))
        },
        "updated_at": timezone.localtime(clock.now()),
        **extra,
    }


def dashboard_view(request: HttpRequest, model_admin: admin.ModelAdmin) -> HttpResponse:
    """Every queue with its figures, charts and actions."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    if request.method == "POST":
        return _handle_action(request, model_admin, sorted(all_queue_configs()))
    queues = overview()
    context = _context(request, model_admin, queues=queues, title=_("Task queues"))
    template = (
        "django_taskqueue/admin/_dashboard_table.html"
        if request.GET.get("fragment")
        else "django_taskqueue/admin/dashboard.html"
    )
    return TemplateResponse(request, template, context)


def queue_view(request: HttpRequest, model_admin: admin.ModelAdmin, name: str) -> HttpResponse:
    """One queue: larger charts, its errors grouped by reason, its slowest tasks."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    if name not in all_queue_configs():
        raise Http404(_("No queue named %(queue)s") % {"queue": name})
    if request.method == "POST":
        return _handle_action(request, model_admin, [name])
    now = clock.now()
    [queue] = overview([name], now=now)
    context = _context(
        request,
        model_admin,
        queue=queue,
        queues=[queue],
        errors=recent_errors(name, now),
        slowest=slowest_tasks(name, now),
        slowest_scan=SLOWEST_SCAN,
        title=_("Queue %(queue)s") % {"queue": name},
    )
    template = (
        "django_taskqueue/admin/_queue_body.html"
        if request.GET.get("fragment")
        else "django_taskqueue/admin/queue.html"
    )
    return TemplateResponse(request, template, context)
