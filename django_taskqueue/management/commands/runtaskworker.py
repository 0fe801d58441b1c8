"""`manage.py runtaskworker`: run a push-queue worker in this process."""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from ...dispatch.worker import Worker
from ...exceptions import Error


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError
    return value


class Command(BaseCommand):
    help = "Dispatch the due tasks of push queues: deliver, rate-limit, retry and sweep."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--queue",
            action="append",
            dest="queues",
            metavar="NAME",
            help="A push queue to serve (repeatable). Default: every push queue.",
        )
        parser.add_argument(
            "--concurrency", type=_positive_int, default=1, help="Attempts run at once."
        )
        parser.add_argument(
            "--prefetch",
            type=_positive_int,
            default=20,
            help="Tasks claimed per free slot in one claim, run one after another.",
        )
        parser.add_argument("--burst", action="store_true", help="Run every due task, then exit.")
        parser.add_argument(
            "--max-tasks", type=_positive_int, default=None, help="Exit after this many tasks."
        )
        parser.add_argument("--worker-id", default=None, help="Name of this worker (≤ 64).")
        parser.add_argument(
            "--poll-interval",
            type=_positive_float,
            default=None,
            help="Seconds between looks for due tasks when idle (POLL_INTERVAL_SECONDS).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        worker_id = options["worker_id"]
        if worker_id is not None and not 1 <= len(worker_id) <= 64:
            raise CommandError("--worker-id must be 1 to 64 characters.")
        _log_to_console(options["verbosity"])
        try:
            worker = Worker(
                options["queues"],
                concurrency=options["concurrency"],
                prefetch=options["prefetch"],
                burst=options["burst"],
                max_tasks=options["max_tasks"],
                worker_id=worker_id,
                poll_interval_seconds=options["poll_interval"],
                install_signal_handlers=True,
            )
        except (Error, ImproperlyConfigured) as e:
            # A broken queue.yaml or QUEUES (when checks were skipped): one line, no traceback.
            raise CommandError(str(e)) from e
        worker.run()


def _log_to_console(verbosity: int) -> None:
    # The attempt and summary lines go to stderr unless the project's LOGGING already
    # handles the django_taskqueue logger.
    logger = logging.getLogger("django_taskqueue")
    if verbosity == 0 or logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO if verbosity >= 1 else logging.WARNING)
