"""Many worker processes at once: start them, wait for them, read what they logged."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import REPO_ROOT


class WorkerFleet:
    """`count` `runtaskworker` processes, each logging to its own file under `directory`."""

    def __init__(self, env: dict[str, str], directory: Path, count: int, *args: str) -> None:
        self.logs = [directory / f"worker-{i}.log" for i in range(count)]
        self.procs = []
        for log in self.logs:
            with open(log, "w") as out:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "django", "runtaskworker", *args],
                        cwd=REPO_ROOT,
                        env={**env, "PYTHONUNBUFFERED": "1"},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )

    def output(self, i: int) -> str:
        return self.logs[i].read_text()

    def outputs(self) -> str:
        return "\n".join(f"--- worker {i}\n{self.output(i)}" for i in range(len(self.logs)))

    def wait_started(self, timeout: float = 120.0) -> None:
        """Wait until every worker has logged its start (Django loaded, queues checked)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all("event=worker_started" in self.output(i) for i in range(len(self.logs))):
                return
            if any(p.poll() is not None for p in self.procs):
                pytest.fail("a worker exited early:\n" + self.outputs())
            time.sleep(0.2)
        pytest.fail("the workers did not all start:\n" + self.outputs())

    def wait_exited(self, timeout: float = 300.0) -> list[int]:
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        return [p.returncode for p in self.procs]

    def stop(self, timeout: float = 60.0) -> list[int]:
        """SIGTERM every worker (in-flight attempts finish) and wait for them."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        return self.wait_exited(timeout)

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def problems(output: str) -> list[str]:
    """Lines of a worker's log that report an error of the worker itself."""
    words = ("Traceback", "event=database_error", "event=attempt_crashed", "ERROR")
    return [line for line in output.splitlines() if any(w in line for w in words)]
