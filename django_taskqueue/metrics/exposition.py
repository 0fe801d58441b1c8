"""Every queue's figures as metric families, written in Prometheus' text exposition format.

Gauges are read now (live rows, runtime state); counters are the totals rows the workers keep
in `QueueMinuteStats`, which only grow. Three queries whatever the number of queues.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from .. import clock, figures
from ..conf import taskqueue_settings
from ..dispatch.minute_stats import TOTALS
from ..models import QueueMinuteStats, QueueState
from ..queues import all_queue_configs

#: Version 0.0.4 of the text format, which every Prometheus-compatible scraper reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Family:
    """One metric: its name, type and help text, and a value per queue."""

    name: str
    type: str
    help: str
    samples: list[tuple[str, float]] = field(default_factory=list)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _value(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def collect(now: datetime.datetime | None = None) -> list[Family]:
    """Return the metric families of every configured queue."""
    now = now or clock.now()
    configs = all_queue_configs()
    names = sorted(configs)
    alias = taskqueue_settings.DATABASE
    states = {s.name: s for s in QueueState.objects.using(alias).filter(name__in=names)}
    live = figures.by_queue(alias, names, figures.live(now))
    totals = {
        row.queue_name: row
        for row in QueueMinuteStats.objects.using(alias).filter(queue_name__in=names, span=TOTALS)
    }

    def family(name: str, type_: str, help_: str) -> Family:
        return Family(f"taskqueue_{name}", type_, help_)

    waiting = family("tasks_waiting", "gauge", "Tasks due and waiting to run or be leased.")
    in_flight = family("tasks_in_flight", "gauge", "Push tasks running now.")
    leased = family("tasks_leased", "gauge", "Pull tasks under a live lease.")
    oldest = family(
        "oldest_task_age_seconds", "gauge", "Age of the oldest due task (0 when none waits)."
    )
    enforced = family(
        "enforced_rate_tasks_per_second", "gauge", "Rate the workers have been dispatching at."
    )
    configured = family("rate_tasks_per_second", "gauge", "Rate set in the queue's configuration.")
    cap = family("max_concurrent_requests", "gauge", "Cap on push tasks running at once.")
    paused = family("queue_paused", "gauge", "1 when the queue is paused.")
    executed = family("tasks_executed_total", "counter", "Attempts finished by the workers.")
    failed = family("tasks_failed_total", "counter", "Attempts that failed for good.")
    retried = family("tasks_retried_total", "counter", "Failed attempts queued again.")
    run_seconds = family(
        "task_run_seconds_total", "counter", "Time the workers spent running attempts."
    )
    for name in names:
        config = configs[name]
        state = states.get(name)
        row = live.get(name, {})
        waiting.samples.append((name, row.get("waiting", 0)))
        oldest_at = row.get("oldest_due_at")
        age = max(0.0, (now - oldest_at).total_seconds()) if oldest_at else 0.0
        oldest.samples.append((name, age))
        paused.samples.append(
            (name, bool(config.paused_by_config or (state is not None and state.paused)))
        )
        if config.is_pull:
            leased.samples.append((name, row.get("leased", 0)))
        else:
            in_flight.samples.append((name, row.get("running", 0)))
            enforced.samples.append((name, (state.rate_at(now) if state else None) or 0.0))
            configured.samples.append((name, config.rate or 0.0))
            if config.max_concurrent_requests:
                cap.samples.append((name, config.max_concurrent_requests))
        total = totals.get(name)
        executed.samples.append((name, total.executed if total else 0))
        failed.samples.append((name, total.failed if total else 0))
        retried.samples.append((name, total.retried if total else 0))
        run_seconds.samples.append((name, total.run_seconds if total else 0.0))
    return [
        waiting,
        in_flight,
        leased,
        oldest,
        enforced,
        configured,
        cap,
        paused,
        executed,
        failed,
        retried,
        run_seconds,
    ]


def render(families: list[Family]) -> str:
    """Return the families in the text exposition format."""
    lines: list[str] = []
    for fam in families:
        lines.append(f"# HELP {fam.name} {fam.help}")
        lines.append(f"# TYPE {fam.name} {fam.type}")
        for queue, value in fam.samples:
            lines.append(f'{fam.name}{{queue="{_escape(queue)}"}} {_value(value)}')
    return "\n".join(lines) + "\n"
