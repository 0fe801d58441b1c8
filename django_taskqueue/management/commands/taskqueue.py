"""`manage.py taskqueue`: the admin's figures and actions for terminals and scripts.

    manage.py taskqueue stats [--queue NAME] [--json]
    manage.py taskqueue list QUEUE [--state STATE] [--tag TAG] [--name-prefix P] [--limit N] [--json]
    manage.py taskqueue pause|resume|run-now|retry-failed QUEUE [QUEUE ...]
    manage.py taskqueue purge QUEUE [QUEUE ...] --yes

Each subcommand calls what the admin calls: the dashboard's `overview()`, `Queue.pause()`,
`resume()`, `purge()`, and the task rows' `run_now()` and `retry()` transitions.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ... import clock, humanize
from ...conf import taskqueue_settings
from ...dashboard import overview
from ...db import store
from ...models import LIVE, TaskRecord, TaskState
from ...queues import all_queue_configs
from ...taskqueue import Queue

_STATES = [*TaskState.values, "live", "all"]


def _table(headers: list[str], rows: list[list[str]], numeric: set[int]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        out = [
            str(c).rjust(w) if i in numeric else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


class Command(BaseCommand):
    help = "Show queue figures and tasks; pause, resume, purge, run now or retry failed tasks."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        stats = sub.add_parser("stats", help="A line of figures per queue.")
        stats.add_argument("--queue", action="append", dest="queues", metavar="NAME")
        stats.add_argument("--json", action="store_true", help="Print JSON (raw numbers).")

        listing = sub.add_parser("list", help="Tasks of a queue, newest first.")
        listing.add_argument("queue", metavar="QUEUE")
        listing.add_argument(
            "--state", choices=_STATES, default="live", help="Default: live (queued, running)."
        )
        listing.add_argument("--tag")
        listing.add_argument("--name-prefix")
        listing.add_argument("--limit", type=int, default=50)
        listing.add_argument("--json", action="store_true")

        for name, text in (
            ("pause", "Pause queues: no dispatch, no leases; adds still work."),
            ("resume", "Resume paused queues."),
            ("purge", "Delete every task of queues (names stay tombstoned)."),
            ("run-now", "Make every waiting task of queues due now."),
            ("retry-failed", "Queue the failed tasks of queues again."),
        ):
            action = sub.add_parser(name, help=text)
            action.add_argument("queues", nargs="+", metavar="QUEUE")
            if name == "purge":
                action.add_argument("--yes", action="store_true", help="Confirm the purge.")

    def handle(self, *args: Any, **options: Any) -> None:
        subcommand = options["subcommand"]
        if subcommand == "stats":
            self._stats(options["queues"], options["json"])
        elif subcommand == "list":
            self._list(options)
        else:
            self._act(subcommand, options["queues"], options.get("yes", False))

    def _check_queues(self, names: list[str]) -> list[str]:
        configured = all_queue_configs()
        unknown = [n for n in names if n not in configured]
        if unknown:
            raise CommandError(
                f"Unknown queue(s): {', '.join(unknown)}. Queues: {', '.join(sorted(configured))}."
            )
        return list(dict.fromkeys(names))

    def _stats(self, names: list[str] | None, as_json: bool) -> None:
        queues = overview(self._check_queues(names) if names else None)
        if as_json:
            data = [
                {
                    "queue": q.name,
                    "mode": q.config.mode,
                    "paused": q.paused,
                    "waiting": q.waiting,
                    "oldest_waiting_seconds": q.oldest_age_seconds,
                    "running": q.running if q.config.is_push else None,
                    "leased": q.leased if q.config.is_pull else None,
                    "max_concurrent_requests": q.config.max_concurrent_requests,
                    "rate": q.config.rate,
                    "enforced_rate": q.enforced_rate if q.config.is_push else None,
                    "executed_last_minute": q.minutes[-1].executed,
                    "executed_last_hour": q.executed_last_hour,
                    "failed_last_hour": q.failed_last_hour,
                    "retried_last_hour": q.retried_last_hour,
                    "executed_last_day": q.executed_last_day,
                }
                for q in queues
            ]
            self.stdout.write(json.dumps(data, indent=2))
            return
        headers = [
            "queue",
            "mode",
            "state",
            "waiting",
            "oldest waiting",
            "in flight",
            "rate (enforced / set)",
            "run 1 h",
            "retried 1 h",
            "failed 1 h",
        ]
        rows = [
            [
                q.name,
                q.config.mode,
                "paused" if q.paused else "active",
                humanize.count(q.waiting),
                q.oldest_age,
                q.in_flight,
                q.rate,
                humanize.count(q.executed_last_hour),
                humanize.count(q.retried_last_hour),
                humanize.count(q.failed_last_hour),
            ]
            for q in queues
        ]
        self.stdout.write(_table(headers, rows, numeric={3, 4, 5, 6, 7, 8, 9}))

    def _list(self, options: dict[str, Any]) -> None:
        [name] = self._check_queues([options["queue"]])
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        tasks = TaskRecord.objects.using(taskqueue_settings.DATABASE).filter(queue_name=name)
        state = options["state"]
        if state == "live":
            tasks = tasks.filter(LIVE)
        elif state != "all":
            tasks = tasks.filter(state=state)
        if options["tag"] is not None:
            tasks = tasks.filter(tag=options["tag"])
        if options["name_prefix"]:
            tasks = tasks.filter(name__startswith=options["name_prefix"])
        fields = ["name", "state", "eta", "retry_count", "tag", "url", "last_retry_reason"]
        rows = list(tasks.order_by("-enqueued_at", "-id").values(*fields)[: options["limit"]])
        if options["json"]:
            for row in rows:
                row["eta"] = row["eta"].isoformat()
            self.stdout.write(json.dumps(rows, indent=2))
            return
        now = clock.now()

        def eta(at: Any) -> str:
            seconds = (at - now).total_seconds()
            return f"in {humanize.age(seconds)}" if seconds > 0 else f"{humanize.age(-seconds)} ago"

        table = [
            [
                r["name"],
                r["state"],
                eta(r["eta"]),
                str(r["retry_count"]),
                r["tag"] if r["tag"] is not None else "-",
                r["url"] or "-",
                r["last_retry_reason"] or "-",
            ]
            for r in rows
        ]
        headers = ["name", "state", "eta", "retries", "tag", "url", "last error"]
        self.stdout.write(_table(headers, table, numeric={3}))

    def _act(self, subcommand: str, names: list[str], confirmed: bool) -> None:
        names = self._check_queues(names)
        if subcommand == "purge" and not confirmed:
            raise CommandError("purge deletes every task of the queue: add --yes to confirm.")
        tasks = TaskRecord.objects.using(taskqueue_settings.DATABASE).filter(queue_name__in=names)
        if subcommand == "pause":
            for name in names:
                Queue(name).pause()
            self.stdout.write(f"Paused {', '.join(names)}.")
        elif subcommand == "resume":
            for name in names:
                Queue(name).resume()
            self.stdout.write(f"Resumed {', '.join(names)}.")
        elif subcommand == "purge":
            for name in names:
                Queue(name).purge()
            self.stdout.write(f"Purged {', '.join(names)}.")
        elif subcommand == "run-now":
            count = store(taskqueue_settings.DATABASE).run_now(tasks, clock.now())
            self.stdout.write(f"{count} task(s) are due now.")
        elif subcommand == "retry-failed":
            count = store(taskqueue_settings.DATABASE).retry_failed(tasks, clock.now())
            self.stdout.write(f"{count} failed task(s) queued again.")
