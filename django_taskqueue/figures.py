"""Queue figures: the one definition of each figure of a queue read from its task rows.

Figures come in groups, each a set of aggregates over the rows the group reads: the live rows
(waiting, leased or running), the attempts of the last hour, the failures of the last hour.
`QueueStatistics`, the admin's queue list, the dashboard and the metrics read them from here,
each in the query shape it needs: one queue (`of_queue`), one grouped query over many queues
(`by_queue`), or a subquery per figure correlated to a queue's row (`correlated`), which the
admin's change list can sort by.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import Aggregate, Count, Min, OuterRef, Q, Subquery
from django.db.models.expressions import BaseExpression
from django.db.models.functions import Coalesce

from .models import LIVE, TaskRecord, TaskState


@dataclass(frozen=True)
class FigureGroup:
    """Aggregates over one set of a queue's task rows."""

    rows: Q
    aggregates: dict[str, Aggregate]


def live(now: datetime.datetime) -> FigureGroup:
    """The live rows: all of them (`tasks`), the due ones (`waiting`, `oldest_due_at`), the
    earliest ETA of any waiting task (`oldest_eta`), `running` push tasks and `leased` pull tasks.
    """
    queued = Q(state=TaskState.QUEUED)
    due = queued & Q(eta__lte=now)
    # A pull task under a lease stays QUEUED, its ETA moved to the lease's expiry.
    under_lease = queued & Q(method="PULL", leased_at__isnull=False, eta__gt=now)
    return FigureGroup(
        LIVE,
        {
            "tasks": Count("id"),
            "waiting": Count("id", filter=due),
            "oldest_eta": Min("eta", filter=queued),
            "oldest_due_at": Min("eta", filter=due),
            "running": Count("id", filter=Q(state=TaskState.RUNNING)),
            "leased": Count("id", filter=under_lease),
        },
    )


def executed(now: datetime.datetime) -> FigureGroup:
    """Attempts started (push) or leases taken (pull) in the last minute and the last hour."""
    minute, hour = now - datetime.timedelta(minutes=1), now - datetime.timedelta(hours=1)
    return FigureGroup(
        Q(leased_at__gte=hour),
        {
            "executed_last_minute": Count("id", filter=Q(leased_at__gte=minute)),
            "executed_last_hour": Count("id"),
        },
    )


def failed(now: datetime.datetime) -> FigureGroup:
    """Tasks that failed for good in the last minute and the last hour."""
    minute, hour = now - datetime.timedelta(minutes=1), now - datetime.timedelta(hours=1)
    return FigureGroup(
        Q(state=TaskState.FAILED, finished_at__gte=hour),
        {
            "failed_last_minute": Count("id", filter=Q(finished_at__gte=minute)),
            "failed_last_hour": Count("id"),
        },
    )


def of_queue(alias: str, queue_name: str, group: FigureGroup) -> dict[str, Any]:
    """Return the group's figures of one queue, in one query."""
    rows = TaskRecord.objects.using(alias).filter(group.rows, queue_name=queue_name)
    return rows.aggregate(**group.aggregates)


def by_queue(alias: str, names: list[str], group: FigureGroup) -> dict[str, Mapping[str, Any]]:
    """Return the group's figures per queue named, in one grouped query.

    A queue without a row in the group is absent: its counts are 0 and its times None.
    """
    rows = (
        TaskRecord.objects.using(alias)
        .filter(group.rows, queue_name__in=names)
        .values("queue_name")
        .annotate(**group.aggregates)
        .order_by()
    )
    return {row["queue_name"]: row for row in rows}


def correlated(group: FigureGroup) -> dict[str, BaseExpression]:
    """Return each figure as a subquery on the task rows of the outer row's queue (`name`)."""
    expressions: dict[str, BaseExpression] = {}
    for name, aggregate in group.aggregates.items():
        rows = (
            TaskRecord.objects.filter(group.rows, queue_name=OuterRef("name"))
            .order_by()
            .values("queue_name")
            .annotate(figure=aggregate)
            .values("figure")
        )
        subquery = Subquery(rows)
        # A queue without rows has no group: its counts are 0, its times NULL.
        expressions[name] = Coalesce(subquery, 0) if isinstance(aggregate, Count) else subquery
    return expressions
