"""`runtaskworker --processes N`: N worker processes under one supervisor.

Each child is a fresh interpreter running `python -m django runtaskworker` with the parent's
options (less `--processes`) and a worker id of its own: it sets Django up and opens its own
database connections, so nothing is shared across a fork. The children run in a process group
of their own, so that Ctrl-C in a terminal reaches only the supervisor, which forwards it:

* the first SIGTERM or SIGINT is passed on as SIGTERM: every child stops claiming, lets its
  in-flight attempts finish and exits; no child is restarted from then on;
* a second one is passed on again, and each child exits at once (its tasks come back when
  their leases expire), as a single worker does on a second signal.

A child that exits 0 (burst done, `--max-tasks` reached) has finished and is not restarted. A
child that dies otherwise (a crash, SIGKILL, the out-of-memory killer) is started again after
a pause that doubles while it keeps dying within `STARTUP_SECONDS` of its start, so a child
that cannot start does not spin; after `MAX_STARTUP_FAILURES` such deaths in a row the
supervisor stops the others and exits 1.

The tasks a child held when it died are queued again at once (`rescue_child`), before its
replacement starts: the supervisor saw the death, so nobody waits for the child's heartbeat to
fall silent (`WORKER_TIMEOUT_SECONDS`). As the rescuer would, it charges an attempt to the
tasks whose start the child's last beat carried and gives the others back uncharged. If the
database cannot be reached then, the workers' own rescuer finds the child later; a rescue that
takes over `RESCUE_WAIT_SECONDS` goes on in its thread while the supervisor does its work.

The children's stdout and stderr come through the supervisor, each line prefixed with
`[worker id]`, so the command writes one log stream.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

logger = logging.getLogger("django_taskqueue")

#: A child that dies sooner than this after its start failed to start.
STARTUP_SECONDS = 5.0
#: Failures to start in a row after which the supervisor gives up (and exits 1).
MAX_STARTUP_FAILURES = 5
#: The first pause before a crashed child is started again; it doubles per failed start.
FIRST_RESTART_PAUSE_SECONDS = 0.5
#: The longest pause before a crashed child is started again.
MAX_RESTART_PAUSE_SECONDS = 30.0
#: How often the supervisor looks at its children.
_TICK_SECONDS = 0.1
#: Set in each child's environment: the supervisor's process id (see `watch_supervisor`).
SUPERVISOR_PID_ENV = "TASKQUEUE_SUPERVISOR_PID"
#: The most a child's output pipe is read at once, and the pause after each read (`_pump`).
_PUMP_READ_BYTES = 65536
_PUMP_BATCH_SECONDS = 0.005
#: How often a child checks that its supervisor is still alive.
_PARENT_CHECK_SECONDS = 0.5
#: The longest the supervisor waits for a dead child's tasks to be rescued before it goes on
#: (forwarding signals, restarting children); the rescue itself goes on in its thread.
RESCUE_WAIT_SECONDS = 5.0


def watch_supervisor() -> None:
    """In a child of `--processes`: stop gracefully (SIGTERM to itself) if the supervisor dies.

    The children run in a session of their own, so a SIGKILL of the supervisor, or of its
    process group, would otherwise leave them running with nobody to stop them.
    """
    text = os.environ.get(SUPERVISOR_PID_ENV)
    if not text or not text.isdigit():
        return
    supervisor_pid = int(text)

    def watch() -> None:
        while os.getppid() == supervisor_pid:
            time.sleep(_PARENT_CHECK_SECONDS)
        logger.warning("event=supervisor_lost pid=%s", supervisor_pid)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="taskworker-parent", daemon=True).start()


def rescue_child(worker_id: str) -> int:
    """Queue again the tasks of the dead child `worker_id`; return how many were rescued.

    A database error is logged, not raised: the supervisor goes on, and the workers' rescuer
    finds the child once its heartbeat is older than `WORKER_TIMEOUT_SECONDS`.
    """
    from django.db import connections

    from .. import clock
    from ..conf import taskqueue_settings
    from .dbretry import DB_ERRORS
    from .sweeps import Rescuer

    alias = taskqueue_settings.DATABASE
    try:
        rescued = Rescuer(alias, 0.0).rescue_worker(worker_id, clock.now())
    except DB_ERRORS:
        logger.warning("event=child_rescue_failed worker=%s", worker_id, exc_info=True)
        return 0
    finally:
        # The supervisor keeps no connection open between its children's deaths.
        connections[alias].close()
    return rescued


def resolve_processes(value: str) -> int:
    """Parse `--processes`: a whole number >= 1, or `0`/`auto` for every CPU core."""
    if value.strip().lower() in ("0", "auto"):
        return os.cpu_count() or 1
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 1:
        raise ValueError(
            f"must be a whole number, 1 or more, or 0/auto for every core (got {value!r})"
        )
    return count


@dataclasses.dataclass
class Child:
    """One slot of the supervisor: the process now filling it and its restart history."""

    slot: int
    base_id: str
    process: subprocess.Popen[bytes] | None = None
    worker_id: str = ""
    started_at: float = 0.0
    starts: int = 0
    failed_starts: int = 0
    restart_at: float | None = 0.0  # monotonic time of the next start; None: done
    pumps: list[threading.Thread] = dataclasses.field(default_factory=list)

    def next_worker_id(self) -> str:
        suffix = f"-p{self.slot}" + (f"r{self.starts}" if self.starts else "")
        return self.base_id[: 64 - len(suffix)] + suffix


class Supervisor:
    """Run `processes` copies of `runtaskworker` with `child_args`, restart the ones that die.

    `run()` returns the exit code: 0 when every child finished or stopped cleanly after a
    signal, 1 when a child kept failing to start, or when the children exited with errors
    after a signal.
    """

    def __init__(
        self,
        processes: int,
        child_args: Sequence[str],
        base_id: str,
        *,
        stdout: IO[bytes] | None = None,
        stderr: IO[bytes] | None = None,
        on_child_death: Callable[[str], int] | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError("processes must be at least 1")
        self.child_args = list(child_args)
        self.children = [Child(slot, base_id) for slot in range(1, processes + 1)]
        self.stdout = stdout if stdout is not None else sys.stdout.buffer
        self.stderr = stderr if stderr is not None else sys.stderr.buffer
        #: Called with the worker id of each child that exits other than 0, before it is
        #: started again (`rescue_child` under `runtaskworker`); returns how many of the
        #: child's tasks it queued again.
        self.on_child_death = on_child_death
        self._write_lock = threading.Lock()
        self._signals = 0
        self._forwarded = 0
        self._gave_up = False
        self._failed_exit = False

    # -- public ---------------------------------------------------------------------------

    def run(self) -> int:
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        logger.info("event=supervisor_started processes=%s pid=%s", len(self.children), os.getpid())
        try:
            while True:
                self._forward_signals()
                self._reap()
                if all(c.process is None and c.restart_at is None for c in self.children):
                    break
                self._start_due()
                time.sleep(_TICK_SECONDS)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._kill_all()
            for child in self.children:
                for pump in child.pumps:
                    pump.join(timeout=5)
        code = 1 if self._gave_up or self._failed_exit else 0
        logger.info("event=supervisor_stopped exit_code=%s", code)
        return code

    # -- signals --------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Only a counter here; the loop forwards within one tick.
        self._signals += 1

    def _forward_signals(self) -> None:
        while self._forwarded < self._signals:
            self._forwarded += 1
            logger.info(
                "event=supervisor_stopping signal=%s immediate=%s",
                self._forwarded,
                self._forwarded > 1,
            )
            self._stop_all(signal.SIGTERM)

    def _stop_all(self, signum: int) -> None:
        for child in self.children:
            child.restart_at = None
            if child.process is not None and child.process.poll() is None:
                try:
                    child.process.send_signal(signum)
                except ProcessLookupError:
                    pass

    def _kill_all(self) -> None:
        for child in self.children:
            if child.process is not None and child.process.poll() is None:
                child.process.kill()
                child.process.wait()

    # -- children -------------------------------------------------------------------------

    def _reap(self) -> None:
        now = time.monotonic()
        for child in self.children:
            process = child.process
            if process is None:
                continue
            code = process.poll()
            if code is None:
                continue
            child.process = None
            ran = now - child.started_at
            stopping = self._signals > 0 or self._gave_up
            if code == 0:
                logger.info("event=child_exited worker=%s exit_code=0", child.worker_id)
                child.restart_at = None
                continue
            rescued = self._rescue(child.worker_id)
            if stopping:
                logger.warning(
                    "event=child_exited worker=%s exit_code=%s rescued=%s",
                    child.worker_id,
                    code,
                    rescued,
                )
                # A child still starting when the SIGTERM came dies of it (its handlers are
                # not installed yet): it had nothing to finish, so it stopped as asked.
                if code != -signal.SIGTERM:
                    self._failed_exit = True
                child.restart_at = None
                continue
            # A child that held tasks when it died had started: a task that kills its worker
            # is ended by MAX_WORKER_LOSSES, not taken for a child that cannot start.
            failed_start = ran < STARTUP_SECONDS and not rescued
            child.failed_starts = child.failed_starts + 1 if failed_start else 0
            if child.failed_starts >= MAX_STARTUP_FAILURES:
                logger.error(
                    "event=supervisor_giving_up worker=%s exit_code=%s failed_starts=%s",
                    child.worker_id,
                    code,
                    child.failed_starts,
                )
                self._gave_up = True
                self._stop_all(signal.SIGTERM)
                continue
            pause = (
                min(
                    MAX_RESTART_PAUSE_SECONDS,
                    FIRST_RESTART_PAUSE_SECONDS * 2 ** (child.failed_starts - 1),
                )
                if child.failed_starts
                else 0.0
            )
            child.restart_at = now + pause
            logger.warning(
                "event=child_died worker=%s exit_code=%s ran=%.1fs rescued=%s restart_in=%.1fs",
                child.worker_id,
                code,
                ran,
                rescued,
                pause,
            )

    def _rescue(self, worker_id: str) -> int:
        """Run `on_child_death` for `worker_id` in a thread; wait `RESCUE_WAIT_SECONDS` at most.

        A database that drops packets instead of refusing them would otherwise hold the
        supervisor until its connect timed out. A rescue not done in time counts as none.
        """
        callback = self.on_child_death
        if callback is None:
            return 0
        done: list[int] = []

        def rescue() -> None:
            try:
                done.append(callback(worker_id))
            except Exception:  # a failure of the rescue must not end the supervisor
                logger.exception("event=child_rescue_failed worker=%s", worker_id)
                done.append(0)

        thread = threading.Thread(target=rescue, name="taskworker-rescue", daemon=True)
        thread.start()
        thread.join(RESCUE_WAIT_SECONDS)
        if not done:
            logger.warning(
                "event=child_rescue_slow worker=%s waited=%.1fs", worker_id, RESCUE_WAIT_SECONDS
            )
            return 0
        return done[0]

    def _start_due(self) -> None:
        if self._signals or self._gave_up:
            return
        now = time.monotonic()
        for child in self.children:
            if child.process is None and child.restart_at is not None and child.restart_at <= now:
                self._start(child)

    def _start(self, child: Child) -> None:
        child.worker_id = child.next_worker_id()
        child.starts += 1
        command = [
            sys.executable,
            "-m",
            "django",
            "runtaskworker",
            *self.child_args,
            "--worker-id",
            child.worker_id,
        ]
        env = os.environ.copy()
        # The child finds the project as this process does (manage.py's directory is on
        # sys.path here, not in a fresh `python -m django`).
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env["PYTHONUNBUFFERED"] = "1"
        env[SUPERVISOR_PID_ENV] = str(os.getpid())
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches the supervisor alone, which forwards it
        )
        child.process = process
        child.started_at = time.monotonic()
        child.restart_at = None
        prefix = f"[{child.worker_id}] ".encode()
        assert process.stdout is not None and process.stderr is not None
        child.pumps = [t for t in child.pumps if t.is_alive()] + [
            self._pump(process.stdout, self.stdout, prefix),
            self._pump(process.stderr, self.stderr, prefix),
        ]
        logger.info("event=child_started worker=%s pid=%s", child.worker_id, process.pid)

    def _pump(self, source: IO[bytes], sink: IO[bytes], prefix: bytes) -> threading.Thread:
        fd = source.fileno()

        def emit(lines: bytes) -> None:
            # `lines` ends with a newline: each line gets the prefix, in one write.
            out = prefix + lines[:-1].replace(b"\n", b"\n" + prefix) + b"\n"
            with self._write_lock:
                sink.write(out)
                sink.flush()

        def copy() -> None:
            # What a read brings, whole lines only (a line cut by the pipe waits for its
            # end), prefixed and written at once. After each read the thread waits a moment,
            # so that a child logging a line per task is copied a batch of lines per wake-up
            # (one read, one write), not one by one: on a busy machine that is CPU the
            # workers keep. A lone line, from an idle worker, is still copied at once.
            pending = b""
            with source:
                while True:
                    chunk = os.read(fd, _PUMP_READ_BYTES)
                    if not chunk:
                        break
                    pending += chunk
                    end = pending.rfind(b"\n") + 1
                    if end:
                        emit(pending[:end])
                        pending = pending[end:]
                    if len(pending) >= _PUMP_READ_BYTES:  # a very long line: copy what came
                        emit(pending + b"\n")
                        pending = b""
                    time.sleep(_PUMP_BATCH_SECONDS)
                if pending:
                    emit(pending + b"\n")

        thread = threading.Thread(target=copy, name="taskworker-log", daemon=True)
        thread.start()
        return thread
