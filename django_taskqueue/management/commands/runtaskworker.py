"""`manage.py runtaskworker`: run a push-queue worker in this process."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.utils import autoreload

from ...conf import taskqueue_settings
from ...dispatch.worker import Worker
from ...exceptions import Error

#: How long a reload waits for in-flight attempts before the process restarts anyway.
RELOAD_GRACE_SECONDS = 10.0

#: The tags of the system checks a worker leaves out (see `Command.check`).
_WORKER_SKIPS = frozenset({checks.Tags.templates, "commands"})


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number, 1 or more (got {text!r})")
    return value


def _processes(text: str) -> int:
    from ...dispatch.supervisor import resolve_processes

    try:
        return resolve_processes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0 (got {text!r})")
    return value


class Command(BaseCommand):
    help = (
        "Dispatch the due tasks of push queues: deliver, rate-limit, retry and sweep. "
        "SIGTERM or Ctrl-C stops it cleanly (in-flight tasks finish, unstarted ones go back)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--queue",
            action="append",
            dest="queues",
            metavar="NAME",
            help="A push queue to serve (repeatable). Default: every push queue.",
        )
        parser.add_argument(
            "--concurrency",
            type=_positive_int,
            default=1,
            metavar="N",
            help="Attempts run at once, each in its own thread. Default: 1.",
        )
        parser.add_argument(
            "--prefetch",
            type=_positive_int,
            default=None,
            metavar="N",
            help="Tasks claimed per free slot in one claim, run one after another. Default: 20, "
            "and up to 100 while the attempts are quick (a few milliseconds or less).",
        )
        parser.add_argument(
            "--processes",
            type=_processes,
            default=None,
            metavar="N",
            help="Run N worker processes under one supervisor (signals forwarded, a crashed "
            "one restarted, one log); 0 or 'auto': one per CPU core. Default: this process "
            "alone.",
        )
        parser.add_argument(
            "--burst",
            action="store_true",
            help="Run every due task, then exit. Default: off (run until stopped).",
        )
        parser.add_argument(
            "--max-tasks",
            type=_positive_int,
            default=None,
            metavar="N",
            help="Exit after this many tasks. Default: no limit.",
        )
        parser.add_argument(
            "--worker-id",
            default=None,
            metavar="NAME",
            help="Name of this worker, 1 to 64 characters. Default: host name, process id and a random suffix.",
        )
        parser.add_argument(
            "--poll-interval",
            type=_positive_float,
            default=None,
            metavar="SECONDS",
            help="Seconds between looks for due tasks when idle. Default: "
            f"TASKQUEUE['POLL_INTERVAL_SECONDS'] ({_setting('POLL_INTERVAL_SECONDS')}).",
        )
        parser.add_argument(
            "--reload",
            action="store_true",
            help="Restart when Python code changes, as runserver does (for development). "
            "Default: off.",
        )
        parser.add_argument(
            "--no-cron",
            action="store_true",
            help="Do not serve the cron jobs (CRON_YAML, CRON); other workers may.",
        )
        parser.add_argument(
            "--list-cron",
            action="store_true",
            help="Print the cron jobs with their schedule, last and next run, then exit.",
        )

    def check(
        self,
        app_configs: Sequence[AppConfig] | None = None,
        tags: Sequence[str] | None = None,
        display_num_errors: bool = False,
        include_deployment_checks: bool = False,
        fail_level: int = checks.ERROR,
        databases: Sequence[str] | None = None,
    ) -> None:
        """Run the system checks, less Django's template and command checks.

        The template checks import every installed app's template tag libraries (the admin's,
        DRF's and, through it, django.contrib.postgres) only to compare their names: 20 MB of
        a worker's memory for nothing it runs. The command check (Django 5.2 and later) loads
        the migrate and makemigrations commands, with the migration autodetector, loader and
        writer, to compare their autodetectors: another 0.4 MB for commands a worker never
        runs. `manage.py check`, runserver and migrate still run them all.
        """

        def run() -> None:
            super(Command, self).check(
                app_configs,
                tags,
                display_num_errors,
                include_deployment_checks,
                fail_level,
                databases,
            )

        if tags is not None:
            return run()
        registry = checks.registry.registry
        registered = registry.registered_checks
        registry.registered_checks = {
            check
            for check in registered
            if not _WORKER_SKIPS.intersection(getattr(check, "tags", ()))
        }
        try:
            return run()
        finally:
            registry.registered_checks = registered

    def handle(self, *args: Any, **options: Any) -> None:
        worker_id = options["worker_id"]
        if worker_id is not None and not 1 <= len(worker_id) <= 64:
            raise CommandError(
                f"--worker-id must be 1 to 64 characters; {worker_id!r} has {len(worker_id)}."
            )
        if options["reload"] and options["burst"]:
            raise CommandError("--reload and --burst cannot be combined: a burst worker exits.")
        if options["reload"] and options["processes"] is not None:
            raise CommandError(
                "--reload and --processes cannot be combined: run one process while developing."
            )
        if options["list_cron"]:
            from ...cron.listing import write_cron_table

            write_cron_table(self.stdout)
            return
        _log_to_console(options["verbosity"])
        if options["processes"] is not None:
            self._supervise(options)
            return
        from ...dispatch.supervisor import watch_supervisor

        watch_supervisor()  # a child of --processes stops if its supervisor dies
        if options["reload"]:
            self._run_with_reloader(options)
        else:
            self._worker(options, install_signal_handlers=True).run()

    def _worker(self, options: dict[str, Any], *, install_signal_handlers: bool) -> Worker:
        try:
            return Worker(
                options["queues"],
                concurrency=options["concurrency"],
                prefetch=options["prefetch"],
                burst=options["burst"],
                max_tasks=options["max_tasks"],
                worker_id=options["worker_id"],
                poll_interval_seconds=options["poll_interval"],
                install_signal_handlers=install_signal_handlers,
                cron=not options["no_cron"],
            )
        except (Error, ImproperlyConfigured) as e:
            # A broken queue.yaml or QUEUES (when checks were skipped): one line, no traceback.
            raise CommandError(str(e)) from e

    def _supervise(self, options: dict[str, Any]) -> None:
        from ...dispatch.supervisor import Supervisor, rescue_child
        from ...dispatch.worker import _served_queues, default_worker_id

        # Each child validates the options again; a broken queue.yaml is said here once.
        try:
            _served_queues(options["queues"])
        except (Error, ImproperlyConfigured) as e:
            raise CommandError(str(e)) from e
        code = Supervisor(
            options["processes"],
            _child_args(options),
            options["worker_id"] or default_worker_id(),
            on_child_death=rescue_child,
        ).run()
        if code:
            raise SystemExit(code)

    def _run_with_reloader(self, options: dict[str, Any]) -> None:
        """Run the worker under Django's autoreloader, stopping it cleanly before each restart.

        The reloader runs the worker in a thread and restarts the process (exit code 3) when a
        watched file changes; an interrupt or SIGTERM ends it the same way. Whichever it is,
        the worker first stops claiming and lets its in-flight attempts finish (for up to
        RELOAD_GRACE_SECONDS), so no task waits for its lease to expire after a reload.
        """
        holder: dict[str, Worker] = {}
        done = threading.Event()

        def run() -> None:
            try:
                autoreload.raise_last_exception()
                worker = self._worker(options, install_signal_handlers=False)
                holder["worker"] = worker
                worker.run()
            finally:
                done.set()

        try:
            autoreload.run_with_reloader(run)
        finally:
            worker = holder.get("worker")
            if worker is not None and not done.is_set():
                worker.stop()
                done.wait(RELOAD_GRACE_SECONDS)


def _child_args(options: dict[str, Any]) -> list[str]:
    """The command line of one child of `--processes`: the same options, one process each.

    The children skip the system checks: the supervisor ran them (or was told to skip them)
    before it started any child, with the same settings and code. Each child would otherwise
    import what the checks need and nothing else does (Django's auth views and forms among
    them), about 0.6 MB of every child's memory, and pay their time at every start.
    """
    args = ["--skip-checks", "--concurrency", str(options["concurrency"])]
    if options["prefetch"] is not None:
        args += ["--prefetch", str(options["prefetch"])]
    args += ["--verbosity", str(options["verbosity"])]
    for name in options["queues"] or ():
        args += ["--queue", name]
    if options["burst"]:
        args.append("--burst")
    if options["max_tasks"] is not None:
        args += ["--max-tasks", str(options["max_tasks"])]
    if options["poll_interval"] is not None:
        args += ["--poll-interval", repr(options["poll_interval"])]
    if options["no_cron"]:
        args.append("--no-cron")
    if options.get("settings"):
        args += ["--settings", options["settings"]]
    if options.get("pythonpath"):
        args += ["--pythonpath", options["pythonpath"]]
    if options.get("traceback"):
        args.append("--traceback")
    return args


def _setting(name: str) -> Any:
    try:
        return getattr(taskqueue_settings, name)
    except Exception:  # a malformed TASKQUEUE: the system checks say so
        return "?"


class _ConsoleFormatter(logging.Formatter):
    """`%(asctime)s %(levelname)s %(message)s`, with the date and time text built once a second.

    A busy worker writes a line per attempt; `time.strftime` for each was a third of the cost
    of a line, for text that changes once a second.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s")
        self._second = -1
        self._text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        second = int(record.created)
        if second != self._second:
            self._text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return f"{self._text},{int(record.msecs):03d}"


def _log_to_console(verbosity: int) -> None:
    # The attempt and summary lines go to stderr unless the project's LOGGING already
    # handles the django_taskqueue logger.
    logger = logging.getLogger("django_taskqueue")
    if verbosity == 0 or logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ConsoleFormatter())
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO if verbosity >= 1 else logging.WARNING)
