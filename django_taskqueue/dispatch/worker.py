"""The push-queue worker: claims due tasks, runs their attempts, records outcomes, sweeps.

One `Worker` is one process's dispatcher. Its main thread claims tasks (`claim.claim`) and runs
the sweeps; with `concurrency` above 1 a small pool of threads runs the attempts, each thread
with its own database connection (Django's connections are per thread), closed when the thread
ends. With `concurrency=1` attempts run in the calling thread, which is what `run_tasks()`
needs inside a test's transaction.

Idle workers sleep until the poll interval passes, a token is due, an attempt ends or, on
PostgreSQL, a NOTIFY on the `django_taskqueue` channel arrives from a committed add (a
dedicated connection LISTENs in its own thread).

Shutdown: the first SIGTERM or SIGINT stops claiming and lets in-flight attempts finish; a
second one exits at once, the unfinished tasks coming back through their lease. Database
errors are logged and retried with a growing pause; they never end the worker.
"""

from __future__ import annotations

import datetime
import logging
import os
import queue as queue_module
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

from django.db import DatabaseError, InterfaceError, connections

from .. import clock, signals
from ..conf import taskqueue_settings
from ..db.postgresql import NOTIFY_CHANNEL
from ..models import QueueState, TaskState
from ..queues import QueueConfig, all_queue_configs, get_queue_config
from . import claim as claims
from . import outcome as outcomes
from .delivery import Deliverer, Outcome
from .sweeps import Sweep, default_sweeps

logger = logging.getLogger("django_taskqueue")

_DB_ERRORS = (DatabaseError, InterfaceError)
_MAX_BACKOFF_SECONDS = 30.0
#: How long a successful attempt may wait to be written with the others of its batch.
_MAX_PENDING_SECONDS = 1.0


def default_worker_id() -> str:
    """Return a worker id unique across machines and restarts: host, pid, random suffix."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    """Dispatch the due tasks of push queues until stopped (or, in burst mode, until idle).

    `queues`: names of the push queues to serve (default: every push queue). `concurrency`:
    attempts run at once. `prefetch`: tasks claimed per free slot in one claim and run one
    after another (a claim costs the same round trips for 1 task or 50); a claimed task that
    has not started when the worker stops, or whose lease could no longer cover its deadline,
    goes back to its queue unrun. `burst`: exit once no served queue has a due task and nothing is in
    flight. `max_tasks`: exit after claiming that many tasks. `rate_limits=False` ignores
    rate, bucket_size and max_concurrent_requests (App Engine's development server does).
    `install_signal_handlers`: handle SIGTERM/SIGINT (main thread only; the command sets it).

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
        prefetch: int = 20,
        rate_limits: bool = True,
        run_sweeps: bool = True,
        install_signal_handlers: bool = False,
    ) -> None:
        from ..exceptions import InvalidQueueModeError

        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if max_tasks is not None and max_tasks < 1:
            raise ValueError("max_tasks must be at least 1")
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        if queues is None:
            configs = [c for c in all_queue_configs().values() if c.is_push]
        else:
            configs = [get_queue_config(name) for name in dict.fromkeys(queues)]
            for config in configs:
                if not config.is_push:
                    raise InvalidQueueModeError(f"Queue {config.name!r} is not a push queue")
        self.configs: list[QueueConfig] = sorted(configs, key=lambda c: c.name)
        self.concurrency = concurrency
        self.burst = burst
        self.max_tasks = max_tasks
        self.worker_id = (worker_id or default_worker_id())[:64]
        self.poll_interval_seconds = float(
            poll_interval_seconds or taskqueue_settings.POLL_INTERVAL_SECONDS
        )
        self.batch_size = batch_size
        self.prefetch = prefetch
        self.rate_limits = rate_limits
        self.install_signal_handlers = install_signal_handlers
        self.alias = taskqueue_settings.DATABASE
        self.deadline_seconds = float(taskqueue_settings.DEFAULT_DEADLINE_SECONDS)
        self.lease_seconds = self.deadline_seconds + float(taskqueue_settings.LEASE_MARGIN_SECONDS)
        self.sweeps: list[Sweep] = default_sweeps(self.alias) if run_sweeps else []
        self.deliverer = Deliverer(self.deadline_seconds, max_connections=concurrency)

        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop_requested = False
        self._in_flight = 0
        self._claimed = 0
        self._counts = {"ran": 0, "succeeded": 0, "retried": 0, "failed": 0}
        self._summary_counts = dict(self._counts)
        self._summary_at = clock.monotonic()
        self._sweep_due: dict[str, float] = {}
        self._jobs: queue_module.Queue[tuple[claims.ClaimedTask, QueueConfig] | None] = (
            queue_module.Queue()
        )
        self._threads: list[threading.Thread] = []
        self._listener: threading.Thread | None = None
        self._rotation = 0
        #: Successful attempts whose outcome is not written yet (see _flush_successes).
        self._pending: list[tuple[claims.ClaimedTask, Outcome, dict[str, Any]]] = []
        self._pending_since = 0.0

    # -- public ---------------------------------------------------------------------------

    @property
    def tasks_run(self) -> int:
        """How many attempts this worker has finished."""
        return self._counts["ran"]

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
            self._start()
            self._loop()
        finally:
            self._finish()
            self._restore_signals(previous_handlers)
            self._log_summary(final=True)
        return self.tasks_run

    # -- set-up and tear-down -------------------------------------------------------------

    def _start(self) -> None:
        self.deliverer.warm_up()
        self._with_db_retries(self._ensure_queue_states)
        if self.concurrency > 1:
            for i in range(self.concurrency):
                thread = threading.Thread(
                    target=self._thread_main, name=f"taskworker-{i}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
        if connections[self.alias].vendor == "postgresql" and not self.burst:
            self._listener = threading.Thread(
                target=self._listen, name="taskworker-listen", daemon=True
            )
            self._listener.start()

    def _ensure_queue_states(self) -> None:
        existing = set(
            QueueState.objects.using(self.alias)
            .filter(name__in=[c.name for c in self.configs])
            .values_list("name", flat=True)
        )
        for config in self.configs:
            if config.name not in existing:
                claims.ensure_queue_state(self.alias, config.name)

    def _finish(self) -> None:
        # Let in-flight attempts finish: each thread takes one sentinel after its work.
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        self._with_db_retries(self._flush_successes)
        self._stop_requested = True
        if self._listener is not None:
            self._listener.join(timeout=5)
        self.deliverer.close()

    def _install_signals(self) -> dict[int, Any]:
        if not self.install_signal_handlers:
            return {}
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    @staticmethod
    def _restore_signals(previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Only plain assignments here: a signal handler that took a lock the interrupted
        # code holds would deadlock. The main loop notices the flag within a short slice.
        if self._stop_requested:
            logger.warning("event=worker_killed worker=%s signal=%s", self.worker_id, signum)
            os._exit(1)
        self._stop_requested = True
        logger.info(
            "event=worker_stopping worker=%s signal=%s in_flight=%s",
            self.worker_id,
            signum,
            self._in_flight,
        )

    # -- main loop ------------------------------------------------------------------------

    def _loop(self) -> None:
        failures = 0
        while not self._stop_requested:
            try:
                if self.max_tasks is not None and self._claimed >= self.max_tasks:
                    return
                self._run_due_sweeps()
                self._maybe_log_summary()
                claimed, throttled, wait = self._claim_round()
                if self.burst and not claimed and not throttled and self._in_flight == 0:
                    if not self._has_due_tasks():
                        return
                failures = 0
            except _DB_ERRORS:
                failures += 1
                pause = min(_MAX_BACKOFF_SECONDS, 0.5 * 2 ** (failures - 1))
                logger.exception(
                    "event=database_error worker=%s retry_in=%.1f", self.worker_id, pause
                )
                self._reset_connection()
                self._sleep(pause)
                continue
            if claimed and self._free_slots() > 0 and not throttled:
                continue  # more may be due: claim again at once
            self._sleep(wait)

    def _free_slots(self) -> int:
        with self._lock:
            free = self.concurrency - self._in_flight
        if self.max_tasks is not None:
            free = min(free, self.max_tasks - self._claimed)
        return max(0, free)

    def _claim_capacity(self) -> int:
        """How many tasks the next claim may take: `prefetch` per free slot."""
        with self._lock:
            capacity = max(0, self.concurrency - self._in_flight) * self.prefetch
        if self.max_tasks is not None:
            capacity = min(capacity, self.max_tasks - self._claimed)
        return max(0, min(capacity, self.batch_size))

    def _claim_round(self) -> tuple[int, bool, float]:
        """Claim from each served queue while slots are free; return (claimed, throttled, wait)."""
        claimed_total, throttled_any = 0, False
        wait = self.poll_interval_seconds
        n = len(self.configs)
        # Start each round at the next queue, so a busy queue cannot starve the others.
        order = [self.configs[(self._rotation + i) % n] for i in range(n)] if n else []
        self._rotation += 1
        for config in order:
            capacity = self._claim_capacity()
            if capacity <= 0 or self._stop_requested:
                break
            result = claims.claim(
                self.alias,
                config,
                now=clock.now(),
                worker_id=self.worker_id,
                max_tasks=capacity,
                lease_seconds=self.lease_seconds,
                rate_limits=self.rate_limits,
            )
            if result.throttled:
                throttled_any = True
                if result.wait_seconds is not None:
                    # A little jitter: workers waiting for the same token do not all wake at
                    # the same instant, and no one of them wins every token.
                    jitter = random.uniform(0, 0.01)
                    wait = min(wait, result.wait_seconds + jitter)
            for task in result.tasks:
                self._submit(task, config)
            claimed_total += len(result.tasks)
        self._flush_successes()
        return claimed_total, throttled_any, wait

    def _has_due_tasks(self) -> bool:
        paused = set(
            QueueState.objects.using(self.alias)
            .filter(name__in=[c.name for c in self.configs], paused=True)
            .values_list("name", flat=True)
        )
        names = [c.name for c in self.configs if not c.paused_by_config and c.name not in paused]
        return bool(names) and claims.has_due_tasks(self.alias, names, clock.now())

    def _sleep(self, seconds: float) -> None:
        """Wait up to `seconds`, waking early for a NOTIFY, a finished attempt or a signal."""
        deadline = time.monotonic() + max(0.0, seconds)
        while not self._stop_requested:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            # Short slices: a signal handler only sets a flag (see _on_signal).
            if self._wake.wait(min(remaining, 0.2)):
                self._wake.clear()
                return

    def _reset_connection(self) -> None:
        try:
            connections[self.alias].close()
        except Exception:  # the connection is already broken; a new one opens on next use
            logger.debug("event=close_failed", exc_info=True)

    # -- attempts -------------------------------------------------------------------------

    def _submit(self, task: claims.ClaimedTask, config: QueueConfig) -> None:
        with self._lock:
            self._in_flight += 1
            self._claimed += 1
        if self.concurrency == 1:
            try:
                self._run_attempt(task, config)
            finally:
                with self._lock:
                    self._in_flight -= 1
        else:
            self._jobs.put((task, config))

    def _thread_main(self) -> None:
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                task, config = job
                try:
                    self._run_attempt(task, config)
                except Exception:
                    logger.exception(
                        "event=attempt_crashed worker=%s task=%s", self.worker_id, task.name
                    )
                finally:
                    with self._lock:
                        self._in_flight -= 1
                    self._wake.set()
        finally:
            # This thread's connections: Django keeps one per thread and alias.
            connections.close_all()

    def _run_attempt(self, task: claims.ClaimedTask, config: QueueConfig) -> None:
        if self._stop_requested or (
            task.dispatch_deadline_usec is None and self._lease_too_short(task)
        ):
            self._with_db_retries(lambda: self._release(task))
            return
        if task.dispatch_deadline_usec is not None and self._lease_too_short(task):
            # The task's own deadline outlasts the claim's lease: lengthen this task's lease
            # so that the rescuer leaves it alone for the whole attempt.
            self._with_db_retries(lambda: self._lengthen_lease(task))
        if self._pending and clock.monotonic() - self._pending_since > _MAX_PENDING_SECONDS:
            # Slow attempts behind fast ones: write the waiting successes first, long before
            # their claim's lease could run out.
            self._with_db_retries(self._flush_successes)
        common = {
            "queue_name": task.queue_name,
            "task_name": task.name,
            "task_id": task.id,
            "attempt": task.attempt,
            "worker_id": self.worker_id,
        }
        self._send(signals.task_attempt_started, common)
        result = self.deliverer.deliver(task, config.target or task.target)
        if result.succeeded and result.return_value is None:
            # Written with the other successes of the batch, in one statement.
            with self._lock:
                if not self._pending:
                    self._pending_since = clock.monotonic()
                self._pending.append((task, result, common))
            return
        will_retry, recorded = self._with_db_retries(lambda: self._record(task, config, result))
        self._attempt_done(task, result, will_retry, recorded, common)

    def _flush_successes(self) -> None:
        """Write the pending successful attempts in one statement per claim; report them.

        Successes are the bulk of a busy queue's writes, and each single-row UPDATE is a
        commit of its own. Batched, a worker that dies before the flush loses only the
        record of the success: the tasks run again when their leases expire, which
        at-least-once delivery allows. Failures are written at once (their retry time and
        error history are per task).
        """
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        done = [(task.id, task.leased_at, result.status_code) for task, result, _ in pending]
        try:
            recorded = outcomes.record_successes(self.alias, self.worker_id, done, now=clock.now())
        except BaseException:
            with self._lock:  # kept for the next flush, after the worker reconnects
                self._pending[:0] = pending
            raise
        for task, result, common in pending:
            self._attempt_done(task, result, False, task.id in recorded, common)

    def _attempt_done(
        self,
        task: claims.ClaimedTask,
        result: Outcome,
        will_retry: bool,
        recorded: bool,
        common: dict[str, Any],
    ) -> None:
        if result.succeeded:
            status = "succeeded"
        elif will_retry:
            status = "retry"
        else:
            status = "failed"
        if not recorded:
            status = "dropped"  # deleted, purged or rescued while it ran
        with self._lock:
            self._counts["ran"] += 1
            key = {"succeeded": "succeeded", "retry": "retried", "failed": "failed"}.get(status)
            if key:
                self._counts[key] += 1
        log = logger.info if result.succeeded else logger.warning
        log(
            "event=attempt queue=%s task=%s attempt=%s status=%s code=%s reason=%s "
            "duration=%.3f worker=%s",
            task.queue_name,
            task.name,
            task.attempt,
            status,
            result.status_code,
            _quote(result.reason),
            result.duration,
            self.worker_id,
        )
        self._send(
            signals.task_attempt_finished,
            {
                **common,
                "succeeded": result.succeeded and recorded,
                "will_retry": will_retry and recorded,
                "status_code": result.status_code,
                "error": result.error,
                "return_value": result.return_value,
            },
        )

    def _lease_too_short(self, task: claims.ClaimedTask) -> bool:
        # A prefetched task waited behind others: its claim's lease must still outlast a
        # whole attempt, or the rescuer could hand it to another worker while it runs.
        if task.lease_until is None:
            return False
        remaining = (task.lease_until - clock.now()).total_seconds()
        return remaining < task.deadline_seconds(self.deadline_seconds)

    def _lengthen_lease(self, task: claims.ClaimedTask) -> None:
        """Extend a running task's lease to cover its own deadline plus the margin."""
        margin = self.lease_seconds - self.deadline_seconds
        lease_until = clock.now() + datetime.timedelta(
            seconds=task.deadline_seconds(self.deadline_seconds) + margin
        )
        rows = outcomes.running_row(task.id, self.worker_id, task.leased_at, self.alias)
        rows.update(eta=lease_until)
        task.lease_until = lease_until

    def _release(self, task: claims.ClaimedTask) -> None:
        """Give a claimed task that never started back to its queue, as it was."""
        rows = outcomes.running_row(task.id, self.worker_id, task.leased_at, self.alias)
        rows.update(state=TaskState.QUEUED, eta=task.eta, worker_id=None)
        with self._lock:
            self._claimed -= 1
        logger.info(
            "event=released queue=%s task=%s worker=%s", task.queue_name, task.name, self.worker_id
        )

    def _record(
        self, task: claims.ClaimedTask, config: QueueConfig, result: Outcome
    ) -> tuple[bool, bool]:
        """Write the attempt's outcome; return (will_retry, recorded)."""
        now = clock.now()
        rows = outcomes.running_row(task.id, self.worker_id, task.leased_at, self.alias)
        if result.succeeded:
            return False, outcomes.record_success(
                rows, now=now, status_code=result.status_code, return_value=result.return_value
            )
        decision = outcomes.decide(
            retry_count=task.retry_count,
            retry_options=task.retry_options,
            queue_parameters=config.retry_parameters,
            first_attempt_at=task.first_attempt_at,
            now=now,
            may_retry=result.may_retry,
        )
        # SingularTaskFailure: retried without an error report.
        singular = result.status_code == 408 and result.reason == "singular failure"
        entry = None
        if not singular:
            entry = outcomes.error_entry(
                now=now,
                attempt=task.attempt,
                reason=result.reason,
                status_code=result.status_code,
                error=result.error,
                traceback=result.traceback,
                worker_id=self.worker_id,
            )
        recorded = outcomes.record_failure(
            rows,
            decision=decision,
            now=now,
            status_code=result.status_code,
            reason=result.reason,
            errors=task.errors,
            new_error=entry,
            reached_handler=result.reached_handler,
        )
        return decision.will_retry, recorded

    def _with_db_retries(self, function: Any, attempts: int = 6) -> Any:
        """Call `function`, reconnecting and retrying on database errors with a growing pause."""
        for attempt in range(1, attempts + 1):
            try:
                return function()
            except _DB_ERRORS:
                if attempt == attempts:
                    raise
                pause = min(_MAX_BACKOFF_SECONDS, 0.5 * 2 ** (attempt - 1))
                logger.exception(
                    "event=database_error worker=%s retry_in=%.1f", self.worker_id, pause
                )
                self._reset_connection()
                time.sleep(pause)
        return None  # pragma: no cover

    def _send(self, signal_: Any, kwargs: dict[str, Any]) -> None:
        for receiver, response in signal_.send_robust(sender=self.__class__, **kwargs):
            if isinstance(response, Exception):
                logger.error(
                    "event=signal_receiver_failed receiver=%r",
                    receiver,
                    exc_info=(type(response), response, response.__traceback__),
                )

    # -- sweeps and summary ---------------------------------------------------------------

    def _run_due_sweeps(self) -> None:
        now_mono = clock.monotonic()
        for sweep in self.sweeps:
            if self._sweep_due.get(sweep.name, 0.0) > now_mono:
                continue
            self._sweep_due[sweep.name] = now_mono + sweep.interval_seconds
            try:
                sweep.run(clock.now())
            except _DB_ERRORS:
                raise
            except Exception:
                logger.exception("event=sweep_failed sweep=%s", sweep.name)

    def _maybe_log_summary(self) -> None:
        if clock.monotonic() - self._summary_at >= taskqueue_settings.SUMMARY_INTERVAL_SECONDS:
            self._log_summary()

    def _log_summary(self, final: bool = False) -> None:
        now_mono = clock.monotonic()
        elapsed = max(now_mono - self._summary_at, 1e-9)
        with self._lock:
            counts = dict(self._counts)
        ran = counts["ran"] - self._summary_counts["ran"]
        failed = counts["failed"] - self._summary_counts["failed"]
        retried = counts["retried"] - self._summary_counts["retried"]
        logger.info(
            "event=%s worker=%s ran=%s failed=%s retried=%s rate=%.2f/s in_flight=%s total=%s",
            "worker_stopped" if final else "summary",
            self.worker_id,
            ran,
            failed,
            retried,
            ran / elapsed,
            self._in_flight,
            counts["ran"],
        )
        self._summary_counts = counts
        self._summary_at = now_mono

    # -- PostgreSQL wake-ups --------------------------------------------------------------

    def _listen(self) -> None:
        """LISTEN on a dedicated connection; wake the main loop on each notification."""
        conn = None
        failures = 0
        while not self._stop_requested:
            try:
                if conn is None:
                    db = connections[self.alias]
                    conn = db.get_new_connection(db.get_connection_params())
                    conn.autocommit = True
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._wake.set()  # adds made while not listening
                    failures = 0
                for _ in conn.notifies(timeout=0.5):
                    self._wake.set()
            except Exception:
                failures += 1
                logger.warning(
                    "event=listen_failed worker=%s", self.worker_id, exc_info=failures == 1
                )
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
                    conn = None
                time.sleep(min(_MAX_BACKOFF_SECONDS, 0.5 * 2**failures))
        if conn is not None:
            conn.close()


def _quote(value: str | None) -> str:
    if value is None:
        return "-"
    return '"' + value.replace('"', "'") + '"' if " " in value else value
