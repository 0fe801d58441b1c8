"""The push-queue worker: small services wired together, driven by one loop.

One `Worker` is one process's dispatcher. It wires

* `claimloop.ClaimRound` -- claims due tasks from each served queue (`claim.claim`);
* `executor.Executor` -- runs their attempts, inline or on a pool of threads;
* `delivery.Deliverer` -- delivers one attempt (HTTP, in-process, or a direct call);
* `recorder.OutcomeRecorder` -- writes a failure, or a success with a return value, at once;
* `batcher.SuccessBatcher` -- writes the plain successes together (on PostgreSQL in a thread
  of its own, while the loop runs the next attempts);
* `listener.Listener` -- wakes the loop when an add commits (PostgreSQL's NOTIFY, whose socket
  the loop itself waits on; elsewhere a thread watching the newest task id);
* `heartbeat.Heartbeat` -- announces the worker, and the tasks it has started, every few seconds;
* `sweeps.SweepScheduler` -- runs the rescuer and the pruner on their intervals;
* `tally.Tally` -- counts attempts and logs the summary.

Idle workers sleep until the poll interval passes, a token is due, an attempt ends or the
listener hears of a committed add.

Shutdown: the first SIGTERM or SIGINT stops claiming and lets in-flight attempts finish; a
second one gives the claimed tasks that never started back to their queue (one statement,
a few seconds at most) and exits, the attempts in flight being rescued through the heartbeat.
Database errors are logged and retried with a growing pause, however long the database is
away; they never end the worker. A task claimed before a database error does not start: it is
given back as soon as the database answers again.
"""

from __future__ import annotations

import datetime
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.db import connections

from .. import clock, signals
from ..conf import taskqueue_settings
from ..cron import cron_configured
from ..db import store
from ..db.rows import ClaimedTask
from ..exceptions import InvalidQueueModeError
from ..models import QueueState
from ..queues import QueueConfig, all_queue_configs, get_queue_config
from .batcher import SuccessBatcher
from .claimloop import ClaimRound
from .dbretry import DB_ERRORS, backoff_seconds, reset_connection, with_db_retries
from .delivery import Deliverer, Outcome, keep_connections
from .executor import Executor
from .heartbeat import Heartbeat
from .listener import Listener, Wakeup
from .minute_stats import MinuteStats
from .recorder import AttemptStatus, OutcomeRecorder, status_of
from .sweeps import Sweep, SweepScheduler, default_sweeps
from .tally import Tally

logger = logging.getLogger("django_taskqueue")

#: How long a successful attempt may wait to be written with the others of its batch.
_MAX_PENDING_SECONDS = 1.0
#: After a second signal, how long the worker may spend giving back its unstarted tasks.
_KILL_GRACE_SECONDS = 5.0
#: The databases whose successes a thread of their own writes while the worker goes on
#: (`SuccessBatcher`'s `write_behind`). PostgreSQL's driver waits for the server without the
#: GIL and with little Python of its own; PyMySQL reads the answer in Python, so on MariaDB
#: the writer took the worker's GIL and a push drain ran 10% slower. SQLite has one writer
#: at a time: a second connection's write would hold up the next claim.
_WRITE_BEHIND_VENDORS = ("postgresql",)
#: Tasks claimed per free slot when `prefetch` is not given.
DEFAULT_PREFETCH = 20
#: Without a `prefetch` of its own, a worker whose attempts are quick claims more per free slot
#: (up to `batch_size`): as many as its recent attempts would run in this long.
_QUICK_CLAIM_SECONDS = 0.25

T = TypeVar("T")


def default_worker_id() -> str:
    """Return a worker id unique across machines and restarts: host, pid, random suffix."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    """Dispatch the due tasks of push queues until stopped (or, in burst mode, until idle).

    `queues`: names of the push queues to serve (default: every push queue). `concurrency`:
    attempts run at once. `prefetch`: tasks claimed per free slot in one claim and run one
    after another (a claim costs the same round trips for 1 task or 50); a claimed task that
    has not started when the worker stops, or whose lease could no longer cover its deadline,
    goes back to its queue unrun. Without it, 20 per free slot, and more (up to `batch_size`)
    while the recent attempts are quick enough to run that many in a quarter of a second. `burst`: exit once no served queue has a due task and nothing is in
    flight. `max_tasks`: exit after claiming that many tasks. `rate_limits=False` ignores
    rate, bucket_size and max_concurrent_requests (App Engine's development server does).
    `install_signal_handlers`: handle SIGTERM/SIGINT (main thread only; the command sets it).
    `cron`: serve the cron jobs too (`django_taskqueue.cron.service`; the command sets it).
    `write_behind`: on PostgreSQL, outside a transaction, write the batched successes in a
    thread of their own while the next attempts run (`SuccessBatcher`); False writes them in
    the loop's thread, as on MariaDB and SQLite (`run_tasks()` does).

    Raises `UnknownQueueError` or `InvalidQueueModeError` for a queue that cannot be served.
    """

    def __init__(
        self,
        queues: Iterable[str] | None = None,
        *,
        concurrency: int = 1,
        burst: bool = False,
        max_tasks: int | None = None,
        worker_id: str | None = None,
        poll_interval_seconds: float | None = None,
        batch_size: int = 100,
        prefetch: int | None = None,
        rate_limits: bool = True,
        run_sweeps: bool = True,
        install_signal_handlers: bool = False,
        cron: bool = False,
        heartbeat: bool = True,
        write_behind: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if max_tasks is not None and max_tasks < 1:
            raise ValueError("max_tasks must be at least 1")
        if prefetch is not None and prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        self.configs: list[QueueConfig] = _served_queues(queues)
        self.concurrency = concurrency
        self.burst = burst
        self.max_tasks = max_tasks
        self.worker_id = (worker_id or default_worker_id())[:64]
        self.poll_interval_seconds = float(
            poll_interval_seconds or taskqueue_settings.POLL_INTERVAL_SECONDS
        )
        self.batch_size = batch_size
        self.prefetch = prefetch or DEFAULT_PREFETCH
        #: Whether the claims grow while attempts are quick (no `prefetch` given).
        self.adaptive_prefetch = prefetch is None
        #: A moving average of the attempts' durations (seconds); None before the first.
        self._attempt_seconds: float | None = None
        self.rate_limits = rate_limits
        self.install_signal_handlers = install_signal_handlers
        self.alias = taskqueue_settings.DATABASE
        self.deadline_seconds = float(taskqueue_settings.DEFAULT_DEADLINE_SECONDS)
        self.lease_seconds = self.deadline_seconds + float(taskqueue_settings.LEASE_MARGIN_SECONDS)
        self.sweeps: list[Sweep] = default_sweeps(self.alias, self.worker_id) if run_sweeps else []
        if cron and cron_configured():
            # Called on every loop; it reads the database only when a job's slot is due. With
            # neither CRON_YAML nor CRON there are no jobs to serve, and the cron modules (with
            # their schedule parser) stay out of the worker's memory.
            from ..cron.service import CronService

            self.sweeps.append(CronService(self.alias))
        self.deliverer = Deliverer(self.deadline_seconds, max_connections=concurrency)
        #: Counts of finished attempts for the per-minute statistics (the admin's charts).
        self.minute_stats = MinuteStats(self.alias)

        self._wake = Wakeup()
        self._stop_requested = False
        self._kill_requested = False
        # Inside a transaction (a test's) nothing is announced, and a failed write is not
        # retried forever: the transaction could not go on after it anyway.
        in_transaction = connections[self.alias].in_atomic_block
        self._retry_forever = not in_transaction
        #: Claimed tasks not started yet: id -> (task, the database-error generation at claim).
        self._unstarted: dict[int, tuple[ClaimedTask, int]] = {}
        #: Ids of the tasks whose attempt started and whose outcome is not written yet.
        self._started: set[int] = set()
        self._held_lock = threading.Lock()
        #: Grows on every database error: a task claimed before one never starts.
        self._db_errors = 0
        self.heartbeat = (
            Heartbeat(
                self.alias,
                self.worker_id,
                float(taskqueue_settings.HEARTBEAT_INTERVAL_SECONDS),
                self._started_ids,
                self._on_db_error,
            )
            if heartbeat and not in_transaction
            else None
        )
        self._claimed = 0
        self._claimed_lock = threading.Lock()
        self.tally = Tally(self.worker_id)
        self.executor = Executor(concurrency, self._run_attempt, on_done=self._wake.set)
        self.recorder = OutcomeRecorder(self.alias, self.worker_id)
        self.batcher = SuccessBatcher(
            self.alias,
            self.worker_id,
            self._attempt_done,
            _MAX_PENDING_SECONDS,
            # Inside a transaction the successes are written in it.
            write_behind=self._with_db_retries
            if write_behind
            and not in_transaction
            and connections[self.alias].vendor in _WRITE_BEHIND_VENDORS
            else None,
        )
        self.listener = Listener(self.alias, self._wake, lambda: self._stop_requested)
        self.sweeper = SweepScheduler(self.sweeps)
        self.claims = ClaimRound(
            self.alias,
            self.worker_id,
            self.configs,
            lease_seconds=self.lease_seconds,
            rate_limits=rate_limits,
            poll_interval_seconds=self.poll_interval_seconds,
            capacity=self._claim_capacity,
            submit=self._submit,
            stopping=lambda: self._stop_requested,
            hold=self._hold,
        )

    # -- public ---------------------------------------------------------------------------

    @property
    def tasks_run(self) -> int:
        """How many attempts this worker has finished."""
        return self.tally.ran

    def stop(self) -> None:
        """Ask the worker to stop claiming; in-flight attempts finish first."""
        self._stop_requested = True
        self._wake.set()

    def run(self) -> int:
        """Run until stopped, idle (burst) or `max_tasks` claimed; return the attempts run."""
        previous_handlers = self._install_signals()
        logger.info(
            "event=worker_started worker=%s queues=%s concurrency=%s burst=%s",
            self.worker_id,
            ",".join(c.name for c in self.configs),
            self.concurrency,
            self.burst,
        )
        try:
            # Django's end-of-request connection closing stays off for the whole run, not
            # switched off and on around each attempt (`delivery.keep_connections`).
            with keep_connections():
                self._start()
                self._loop()
        finally:
            self._finish()
            self._restore_signals(previous_handlers)
            self.tally.log_stopped()
        return self.tasks_run

    # -- set-up and tear-down -------------------------------------------------------------

    def _start(self) -> None:
        self.deliverer.warm_up()
        self._with_db_retries(self._ensure_queue_states)
        if self.heartbeat is not None:
            self.heartbeat.start()
        self.executor.start()
        if not self.burst:
            self.listener.start()

    def _ensure_queue_states(self) -> None:
        existing = set(
            QueueState.objects.using(self.alias)
            .filter(name__in=[c.name for c in self.configs])
            .values_list("name", flat=True)
        )
        tasks = store(self.alias)
        for config in self.configs:
            if config.name not in existing:
                tasks.ensure_queue_state(config.name)

    def _finish(self) -> None:
        self.executor.shutdown()
        self._with_db_retries(self.batcher.close)
        self._flush_minute_stats()
        self._stop_requested = True
        if self.heartbeat is not None:
            self.heartbeat.stop()
        self.listener.join(timeout=5)
        self._wake.close()
        self.deliverer.close()

    def _install_signals(self) -> dict[int, Any]:
        if not self.install_signal_handlers:
            return {}
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    @staticmethod
    def _restore_signals(previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Only assignments and thread starts here: a signal handler that took a lock the
        # interrupted code holds (the task store's, a connection's) would deadlock. The main
        # loop notices the flag within a short slice.
        if self._stop_requested:
            if not self._kill_requested:
                self._kill_requested = True
                # The release needs the database and locks: a thread of its own does it, and
                # a timer ends the process if the database does not answer in time.
                exit_timer = threading.Timer(_KILL_GRACE_SECONDS, os._exit, args=(1,))
                exit_timer.daemon = True
                exit_timer.start()
                threading.Thread(target=self._release_and_exit, args=(signum,), daemon=True).start()
            return
        self._stop_requested = True
        logger.info(
            "event=worker_stopping worker=%s signal=%s in_flight=%s",
            self.worker_id,
            signum,
            self.executor.in_flight,
        )

    # -- main loop ------------------------------------------------------------------------

    def _loop(self) -> None:
        failures = 0
        more = False
        while not self._stop_requested:
            try:
                if self.max_tasks is not None and self._claimed >= self.max_tasks:
                    return
                self.sweeper.run_due()
                self.minute_stats.tick()
                if (
                    self.tally.seconds_since_summary()
                    >= taskqueue_settings.SUMMARY_INTERVAL_SECONDS
                ):
                    self.tally.log_summary(self.executor.in_flight)
                claimed, throttled, wait = self.claims.run()
                more = bool(claimed) and not throttled and self._free_slots() > 0
                if not more or self.batcher.full(self.batch_size):
                    # Draining: the successes of several claims in one write. Before the
                    # loop waits, the successes so far, written and reported.
                    self.batcher.flush()
                if not more:
                    self.batcher.settle()
                if self.burst and not claimed and not throttled and self.executor.in_flight == 0:
                    if not self._has_due_tasks():
                        return
                failures = 0
            except DB_ERRORS:
                failures += 1
                self._on_db_error()
                pause = backoff_seconds(failures)
                logger.exception(
                    "event=database_error worker=%s retry_in=%.1f", self.worker_id, pause
                )
                reset_connection(self.alias)
                self._sleep(pause)
                continue
            if more:
                continue  # more may be due: claim again at once
            self._sleep(wait)

    def _free_slots(self) -> int:
        free = self.executor.free_slots()
        if self.max_tasks is not None:
            free = min(free, self.max_tasks - self._claimed)
        return max(0, free)

    def _claim_capacity(self) -> int:
        """How many tasks the next claim may take: `prefetch` per free slot, or more."""
        per_slot = self.prefetch
        recent = self._attempt_seconds
        if self.adaptive_prefetch and recent is not None:
            quick = int(_QUICK_CLAIM_SECONDS / max(recent, 1e-6))
            per_slot = max(per_slot, min(quick, self.batch_size))
        capacity = self.executor.free_slots() * per_slot
        if self.max_tasks is not None:
            capacity = min(capacity, self.max_tasks - self._claimed)
        return max(0, min(capacity, self.batch_size))

    def _has_due_tasks(self) -> bool:
        paused = set(
            QueueState.objects.using(self.alias)
            .filter(name__in=[c.name for c in self.configs], paused=True)
            .values_list("name", flat=True)
        )
        names = [c.name for c in self.configs if not c.paused_by_config and c.name not in paused]
        return bool(names) and store(self.alias).has_due_tasks(names, clock.now())

    def _sleep(self, seconds: float) -> None:
        """Wait up to `seconds`, waking early for a NOTIFY, a finished attempt or a signal."""
        deadline = time.monotonic() + max(0.0, seconds)
        while not self._stop_requested:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            # Short slices: a signal handler only sets a flag (see _on_signal). On PostgreSQL
            # the listener waits on its LISTEN socket here, in this thread: a NOTIFY ends the
            # wait without a thread hand-off.
            if self.listener.wait(min(remaining, 0.2)):
                self._wake.clear()
                return

    # -- attempts -------------------------------------------------------------------------

    def _hold(self, tasks: list[ClaimedTask]) -> None:
        with self._held_lock:
            for task in tasks:
                self._unstarted[task.id] = (task, self._db_errors)

    def _take(self, task: ClaimedTask) -> tuple[bool, bool]:
        """Take a claimed task out of the unstarted ones: (still ours, claimed before an error)."""
        with self._held_lock:
            held = self._unstarted.pop(task.id, None)
            if held is None:
                return False, False  # given back on the way out (a second signal)
            return True, held[1] != self._db_errors

    def _started_ids(self) -> list[int]:
        with self._held_lock:
            return list(self._started)

    def _on_db_error(self) -> None:
        with self._held_lock:
            self._db_errors += 1

    def _release_and_exit(self, signum: int) -> None:
        """Give back the claimed tasks that never started, then end the process."""
        with self._held_lock:
            unstarted = [task for task, _ in self._unstarted.values()]
            self._unstarted.clear()
        released = 0
        try:
            released = store(self.alias).release_unstarted(
                self.worker_id, [t.id for t in unstarted], clock.now()
            )
        except Exception:
            logger.exception("event=release_failed worker=%s", self.worker_id)
        logger.warning(
            "event=worker_killed worker=%s signal=%s released=%s of=%s in_flight=%s",
            self.worker_id,
            signum,
            released,
            len(unstarted),
            self.executor.in_flight,
        )
        logging.shutdown()
        os._exit(1)

    def _submit(self, task: ClaimedTask, config: QueueConfig) -> None:
        with self._claimed_lock:
            self._claimed += 1
        self.executor.submit(task, config)

    def _run_attempt(self, task: ClaimedTask, config: QueueConfig) -> None:
        ours, stale = self._take(task)
        if not ours:
            with self._claimed_lock:
                self._claimed -= 1
            return
        if (
            stale
            or self._stop_requested
            or (task.dispatch_deadline_usec is None and self._lease_too_short(task))
        ):
            self._with_db_retries(lambda: self.recorder.release(task))
            with self._claimed_lock:
                self._claimed -= 1
            return
        if task.dispatch_deadline_usec is not None and self._lease_too_short(task):
            # The task's own deadline outlasts the claim's lease: lengthen this task's lease
            # so that the rescuer leaves it alone for the whole attempt.
            self._with_db_retries(lambda: self._lengthen_lease(task))
        if self.batcher.overdue():
            # Slow attempts behind fast ones: write the waiting successes first, long before
            # their claim's lease could run out.
            self._with_db_retries(self.batcher.flush)
        # The successes flushed since the last claim, written while this attempt runs.
        self.batcher.hand_over()
        common = {
            "queue_name": task.queue_name,
            "task_name": task.name,
            "task_id": task.id,
            "attempt": task.attempt,
            "worker_id": self.worker_id,
        }
        with self._held_lock:
            self._started.add(task.id)  # announced by the next heartbeat
        self._send(signals.task_attempt_started, common)
        result = self.deliverer.deliver(task, config.target or task.target)
        recent = self._attempt_seconds
        self._attempt_seconds = (
            result.duration if recent is None else recent + 0.2 * (result.duration - recent)
        )
        if result.succeeded and result.return_value is None:
            self.batcher.add(task, result, common)  # written with the others of the batch
            return
        status = self._with_db_retries(lambda: self.recorder.record(task, config, result))
        self._report(task, result, status, common)

    def _attempt_done(
        self, task: ClaimedTask, result: Outcome, recorded: bool, common: dict[str, Any]
    ) -> None:
        """Report a batched success once the batcher has written it (or found it gone)."""
        self._report(task, result, status_of(result, False, recorded), common)

    def _report(
        self, task: ClaimedTask, result: Outcome, status: AttemptStatus, common: dict[str, Any]
    ) -> None:
        with self._held_lock:
            self._started.discard(task.id)
        self.tally.count(status)
        self.minute_stats.record(task.queue_name, status.value, result.duration)
        log = logger.info if result.succeeded else logger.warning
        log(
            "event=attempt queue=%s task=%s attempt=%s status=%s code=%s reason=%s "
            "duration=%.3f worker=%s%s",
            task.queue_name,
            task.name,
            task.attempt,
            status.value,
            result.status_code,
            _quote(result.reason),
            result.duration,
            self.worker_id,
            f" why={_quote(result.detail)}" if result.detail else "",
        )
        self._send(
            signals.task_attempt_finished,
            {
                **common,
                "succeeded": status is AttemptStatus.SUCCEEDED,
                "will_retry": status is AttemptStatus.RETRY,
                "status_code": result.status_code,
                "error": result.error,
                "return_value": result.return_value,
            },
        )

    def _lease_too_short(self, task: ClaimedTask) -> bool:
        # A prefetched task waited behind others: its claim's lease must still outlast a
        # whole attempt, or the rescuer could hand it to another worker while it runs.
        if task.lease_until is None:
            return False
        remaining = (task.lease_until - clock.now()).total_seconds()
        return remaining < task.deadline_seconds(self.deadline_seconds)

    def _lengthen_lease(self, task: ClaimedTask) -> None:
        """Extend a running task's lease to cover its own deadline plus the margin."""
        margin = self.lease_seconds - self.deadline_seconds
        lease_until = clock.now() + datetime.timedelta(
            seconds=task.deadline_seconds(self.deadline_seconds) + margin
        )
        store(self.alias).extend_claim(task.key, lease_until)
        task.lease_until = lease_until

    def _with_db_retries(self, function: Callable[[], T]) -> T:
        return with_db_retries(
            self.alias,
            self.worker_id,
            function,
            attempts=None if self._retry_forever else 6,
            on_error=self._on_db_error,
        )

    def _send(self, signal_: Any, kwargs: dict[str, Any]) -> None:
        if not signal_.receivers:  # what send_robust finds too, without its lookups
            return
        for receiver, response in signal_.send_robust(sender=self.__class__, **kwargs):
            if isinstance(response, Exception):
                logger.error(
                    "event=signal_receiver_failed receiver=%r",
                    receiver,
                    exc_info=(type(response), response, response.__traceback__),
                )

    def _flush_minute_stats(self) -> None:
        try:
            self.minute_stats.flush()
        except DB_ERRORS:
            logger.warning("event=stats_flush_failed worker=%s", self.worker_id, exc_info=True)


def _served_queues(names: Iterable[str] | None) -> list[QueueConfig]:
    """Return the push queues to serve, sorted by name; every push queue when `names` is None."""
    if names is None:
        configs = [c for c in all_queue_configs().values() if c.is_push]
    else:
        configs = [get_queue_config(name) for name in dict.fromkeys(names)]
        for config in configs:
            if not config.is_push:
                raise InvalidQueueModeError(f"Queue {config.name!r} is not a push queue")
    return sorted(configs, key=lambda c: c.name)


def _quote(value: str | None) -> str:
    if value is None:
        return "-"
    return '"' + value.replace('"', "'") + '"' if " " in value else value
